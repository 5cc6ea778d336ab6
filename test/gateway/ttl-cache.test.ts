import t from 'tap'
import type { Test } from 'tap'
import { TtlCache } from '../../gateway/ttl-cache.ts'

/** A clock the test moves by hand: `Date.now()` answers `clock.now` until the test ends. */
function manualClock (t: Test, start = 1_000_000): { now: number } {
  const clock = { now: start }
  t.intercept(Date, 'now', { value: () => clock.now })
  return clock
}

t.test('get and set: a value until its time is up, then nothing, and the entry is dropped on that read', async (t) => {
  const clock = manualClock(t)
  const cache = new TtlCache<string, number>(1000)
  t.equal(cache.get('missing'), undefined, 'an unknown key')
  cache.set('a', 1)
  t.equal(cache.get('a'), 1)
  clock.now += 999
  t.equal(cache.get('a'), 1, '1 ms before the end')
  clock.now += 1
  t.equal(cache.size, 1, 'still held until read')
  t.equal(cache.get('a'), undefined, 'at the end of its time: gone')
  t.equal(cache.size, 0, 'the read dropped it')
})

t.test('a per-entry time overrides the default; set again replaces the value and restarts the time', async (t) => {
  const clock = manualClock(t)
  const cache = new TtlCache<string, string>(1000)
  cache.set('short', 's', 10)
  cache.set('long', 'l', 5000)
  clock.now += 10
  t.equal(cache.get('short'), undefined, 'its own 10 ms')
  clock.now += 1990
  t.equal(cache.get('long'), 'l', 'its own 5 s, past the default')

  cache.set('key', 'first')
  clock.now += 900
  cache.set('key', 'second')
  clock.now += 900
  t.equal(cache.get('key'), 'second', 'the new value, on a new time')
  t.equal(cache.size, 2)
})

t.test('at the bound the oldest entry makes room; replacing a held key evicts nothing', async (t) => {
  manualClock(t)
  const cases: Array<{ name: string, max: number, writes: string[], held: string[] }> = [
    { name: 'under the bound', max: 3, writes: ['a', 'b'], held: ['a', 'b'] },
    { name: 'at the bound', max: 3, writes: ['a', 'b', 'c'], held: ['a', 'b', 'c'] },
    { name: 'one over: the first written goes', max: 3, writes: ['a', 'b', 'c', 'd'], held: ['b', 'c', 'd'] },
    { name: 'two over: the first two go', max: 3, writes: ['a', 'b', 'c', 'd', 'e'], held: ['c', 'd', 'e'] },
    { name: 'a bound of one', max: 1, writes: ['a', 'b'], held: ['b'] },
    { name: 'a held key written again at the bound', max: 2, writes: ['a', 'b', 'b', 'a'], held: ['a', 'b'] }
  ]
  for (const { name, max, writes, held } of cases) {
    const cache = new TtlCache<string, string>(1000, max)
    for (const key of writes) cache.set(key, key.toUpperCase())
    t.equal(cache.size, held.length, `${name}: ${held.length} held`)
    t.same(['a', 'b', 'c', 'd', 'e'].filter((key) => cache.get(key) !== undefined), held, `${name}: ${held.join(', ')}`)
  }
})

t.test('delete and deleteWhere remove exactly what they name', async (t) => {
  manualClock(t)
  const cache = new TtlCache<string, { user: string }>(1000)
  cache.set('s1', { user: 'u1' })
  cache.set('s2', { user: 'u1' })
  cache.set('s3', { user: 'u2' })
  cache.set('x4', { user: 'u3' })
  cache.delete('nope')
  t.equal(cache.size, 4, 'deleting an unknown key changes nothing')
  cache.delete('s3')
  t.equal(cache.get('s3'), undefined)
  t.equal(cache.size, 3)
  cache.deleteWhere((value) => value.user === 'u1')
  t.same([cache.get('s1'), cache.get('s2'), cache.get('x4')], [undefined, undefined, { user: 'u3' }], 'by value: every entry of u1, nothing else')
  cache.set('s5', { user: 'u5' })
  cache.deleteWhere((_value, key) => key.startsWith('x'))
  t.same([cache.get('x4'), cache.get('s5')], [undefined, { user: 'u5' }], 'by key')
  cache.deleteWhere(() => false)
  t.equal(cache.size, 1, 'a predicate that matches nothing removes nothing')
})

t.test('sweep drops every expired entry without reading it, and only those', async (t) => {
  const clock = manualClock(t)
  const cache = new TtlCache<string, number>(1000)
  cache.set('10ms', 1, 10)
  cache.set('500ms', 2, 500)
  cache.set('1s', 3)
  cache.sweep(clock.now + 9)
  t.equal(cache.size, 3, 'nothing has expired yet')
  cache.sweep(clock.now + 10)
  t.equal(cache.size, 2, 'the entry at the end of its time is swept')
  clock.now += 600
  cache.sweep()
  t.equal(cache.size, 1, 'sweep() uses the current time')
  t.equal(cache.get('1s'), 3, 'the live entry is untouched')
})
