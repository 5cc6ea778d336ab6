import t from 'tap'
import type { Test } from 'tap'
import fc from 'fast-check'
import { estimateEntrySize, TtlCache } from '../../gateway/ttl-cache.ts'

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

t.test('a key written again counts as the newest: the next eviction takes another', async (t) => {
  manualClock(t)
  const cache = new TtlCache<string, number>(1000, 2)
  cache.set('a', 1)
  cache.set('b', 2)
  cache.set('a', 3)
  cache.set('c', 4)
  t.same([cache.get('a'), cache.get('b'), cache.get('c')], [3, undefined, 4], 'b, written longest ago, made room')
})

t.test('at the byte bound the oldest entries make room; an entry over the whole bound is not held', async (t) => {
  manualClock(t)
  // Each value weighs its length: readable arithmetic.
  const cases: Array<{ name: string, maxBytes: number, maxEntries?: number, writes: Array<[string, string]>, held: string[], bytes: number }> = [
    { name: 'under the bound', maxBytes: 10, writes: [['a', 'xxx'], ['b', 'xxx']], held: ['a', 'b'], bytes: 6 },
    { name: 'exactly at the bound', maxBytes: 6, writes: [['a', 'xxx'], ['b', 'xxx']], held: ['a', 'b'], bytes: 6 },
    { name: 'one byte over: the oldest goes', maxBytes: 6, writes: [['a', 'xxx'], ['b', 'xxx'], ['c', 'x']], held: ['b', 'c'], bytes: 4 },
    { name: 'a large entry pushes out several', maxBytes: 10, writes: [['a', 'xxx'], ['b', 'xxx'], ['c', 'xxx'], ['d', 'xxxxxxxx']], held: ['d'], bytes: 8 },
    { name: 'larger than the bound: not held, the others stay', maxBytes: 6, writes: [['a', 'xxx'], ['b', 'xxxxxxx']], held: ['a'], bytes: 3 },
    { name: 'a held key replaced by a value over the bound: gone, not stale', maxBytes: 6, writes: [['a', 'xxx'], ['a', 'xxxxxxx']], held: [], bytes: 0 },
    { name: 'a held key replaced: its old weight is given back', maxBytes: 6, writes: [['a', 'xxxxx'], ['a', 'x'], ['b', 'xxxxx']], held: ['a', 'b'], bytes: 6 },
    { name: 'the entry bound still holds', maxBytes: 100, maxEntries: 2, writes: [['a', 'x'], ['b', 'x'], ['c', 'x']], held: ['b', 'c'], bytes: 2 }
  ]
  for (const { name, maxBytes, maxEntries, writes, held, bytes } of cases) {
    const cache = new TtlCache<string, string>(1000, { maxBytes, maxEntries, sizeOf: (value) => value.length })
    for (const [key, value] of writes) cache.set(key, value)
    t.same(['a', 'b', 'c', 'd'].filter((key) => cache.get(key) !== undefined), held, `${name}: ${held.join(', ') || 'nothing'} held`)
    t.equal(cache.bytes, bytes, `${name}: ${bytes} bytes counted`)
  }
})

t.test('the byte count follows every removal: delete, deleteWhere, sweep, expiry on read', async (t) => {
  const clock = manualClock(t)
  const cache = new TtlCache<string, string>(1000, { maxBytes: 1000, sizeOf: (value, key) => value.length + key.length })
  cache.set('a', 'xx')
  cache.set('b', 'xxxx')
  cache.set('c', 'xxxxxx', 10)
  cache.set('d', 'xxxxxxxx')
  t.equal(cache.bytes, 3 + 5 + 7 + 9, 'sizeOf sees the key too')
  cache.delete('a')
  t.equal(cache.bytes, 5 + 7 + 9)
  cache.deleteWhere((value) => value === 'xxxx')
  t.equal(cache.bytes, 7 + 9)
  clock.now += 10
  cache.sweep()
  t.equal(cache.bytes, 9, 'swept')
  clock.now += 990
  t.equal(cache.get('d'), undefined)
  t.equal(cache.bytes, 0, 'expired on read')
  t.equal(new TtlCache<string, string>(1000).bytes, 0, 'without a byte bound nothing is counted')
})

t.test('property: whatever the operations, the bounds hold and the count is the sum of what is held', async (t) => {
  const operation = fc.oneof(
    fc.record({ op: fc.constant('set' as const), key: fc.integer({ min: 0, max: 15 }), size: fc.integer({ min: 0, max: 40 }), ttl: fc.integer({ min: 1, max: 50 }) }),
    fc.record({ op: fc.constant('delete' as const), key: fc.integer({ min: 0, max: 15 }) }),
    fc.record({ op: fc.constant('get' as const), key: fc.integer({ min: 0, max: 15 }) }),
    fc.record({ op: fc.constant('tick' as const), ms: fc.integer({ min: 0, max: 30 }) }),
    fc.record({ op: fc.constant('sweep' as const) })
  )
  const clock = manualClock(t)
  fc.assert(fc.property(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 80 }), fc.array(operation, { maxLength: 60 }), (maxEntries, maxBytes, operations) => {
    const cache = new TtlCache<number, number>(20, { maxEntries, maxBytes, sizeOf: (size) => size })
    const model = new Map<number, { size: number, expires: number }>()
    for (const step of operations) {
      if (step.op === 'set') {
        cache.set(step.key, step.size, step.ttl)
        model.delete(step.key)
        if (step.size <= maxBytes) model.set(step.key, { size: step.size, expires: clock.now + step.ttl })
        let total = [...model.values()].reduce((sum, entry) => sum + entry.size, 0)
        for (const [key, entry] of model) {
          if (model.size <= maxEntries && total <= maxBytes) break
          model.delete(key)
          total -= entry.size
        }
      } else if (step.op === 'delete') {
        cache.delete(step.key)
        model.delete(step.key)
      } else if (step.op === 'get') {
        const entry = model.get(step.key)
        const live = entry !== undefined && entry.expires > clock.now
        if (!live) model.delete(step.key)
        if (cache.get(step.key) !== (live ? entry.size : undefined)) return false
      } else if (step.op === 'tick') {
        clock.now += step.ms
      } else {
        cache.sweep()
        for (const [key, entry] of model) if (entry.expires <= clock.now) model.delete(key)
      }
      const total = [...model.values()].reduce((sum, entry) => sum + entry.size, 0)
      if (cache.size !== model.size || cache.bytes !== total || cache.size > maxEntries || cache.bytes > maxBytes) return false
    }
    return true
  }), { numRuns: 500, seed: 13 })
  t.pass('500 runs matched the model')
})

t.test('bounds are validated where they enter', async (t) => {
  t.throws(() => new TtlCache(1000, 0), RangeError, 'no entries at all')
  t.throws(() => new TtlCache(1000, { maxEntries: 1.5 }), RangeError, 'a fractional entry bound')
  t.throws(() => new TtlCache(1000, { maxBytes: 0, sizeOf: () => 1 }), RangeError, 'a byte bound of 0')
  t.throws(() => new TtlCache(1000, { maxBytes: 1024 }), TypeError, 'a byte bound without sizeOf')
})

t.test('estimateEntrySize: strings by length, containers by slots, shared values once, cycles end', async (t) => {
  const base = estimateEntrySize(null, '')
  const shared = { email: 'reader@example.com' }
  const cyclic: Record<string, unknown> = { name: 'x' }
  cyclic.self = cyclic
  const cases: Array<{ name: string, value: unknown, key: string, bytes: number }> = [
    { name: 'an empty key and null', value: null, key: '', bytes: base },
    { name: 'a Latin-1 character a byte', value: null, key: 'abcdefghij', bytes: base + 10 },
    { name: 'other characters two bytes', value: null, key: 'ąąąąą', bytes: base + 10 },
    { name: 'a string value', value: 'x'.repeat(100), key: '', bytes: base - 8 + 16 + 100 },
    { name: 'an object: a header and a slot per property', value: { a: 1, b: true }, key: '', bytes: base - 8 + 32 + 2 * (8 + 8) },
    { name: 'an array: the same per element', value: [1, 2, 3], key: '', bytes: base - 8 + 32 + 3 * (8 + 8) },
    { name: 'an object reachable twice counted once', value: [shared, shared], key: '', bytes: base - 8 + 32 + (8 + 32 + 8 + 16 + 18) + (8 + 8) },
    { name: 'a cycle counted once', value: cyclic, key: '', bytes: base - 8 + 32 + (8 + 17) + (8 + 8) }
  ]
  for (const { name, value, key, bytes } of cases) t.equal(estimateEntrySize(value, key), bytes, name)
  t.ok(estimateEntrySize({ user: { name: 'x'.repeat(10_000) } }, 'k') > 10_000, 'a long name weighs what it is')
})
