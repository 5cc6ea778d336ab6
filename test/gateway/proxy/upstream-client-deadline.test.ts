import t from 'tap'
import type { Test } from 'tap'
import { upstreamError } from '../../../gateway/errors.ts'
import { ClientClosedError, createUpstreamPool, UpstreamClient, UpstreamDeadlineError } from '../../../gateway/proxy/upstream-client.ts'
import { until } from '../../poll.ts'
import { streamingUpstream } from '../../streaming-upstream.ts'
import type { StreamingUpstream } from '../../streaming-upstream.ts'

// Issue 14, finding 5: deadlines were per attempt (undici's headers and body timeouts), not per
// call, so calls queued behind a full pool got their 504 after one, two, three deadlines; and a call
// abandoned while queued still took a connection later. The client's own queue and one timer per call fix both.

function client (t: Test, upstream: StreamingUpstream, connections: number, timeoutMs: number): UpstreamClient {
  const pool = createUpstreamPool('rag', upstream.url, timeoutMs)
  t.teardown(() => pool.destroy())
  return new UpstreamClient(pool, { timeoutMs, idleTimeoutMs: timeoutMs, maxBufferedBytes: 1024, connections })
}

async function settledAfter (promise: Promise<unknown>, started: number): Promise<{ err: unknown, elapsed: number }> {
  try {
    await promise
    return { err: null, elapsed: performance.now() - started }
  } catch (err) {
    return { err, elapsed: performance.now() - started }
  }
}

t.test('one deadline per call: every call behind a hung upstream fails at the deadline, queued or not', async (t) => {
  const hung = await streamingUpstream(t)
  const upstream = client(t, hung, 2, 400)
  const started = performance.now()
  const calls = Array.from({ length: 6 }, () => settledAfter(upstream.call('GET', '/hung', {}, undefined).answer, started))
  t.equal(upstream.active, 2, 'two in flight (the connections)')
  t.equal(upstream.waiting, 4, 'four waiting in the client, not in undici')
  const results = await Promise.all(calls)
  for (const [i, { err, elapsed }] of results.entries()) {
    t.ok(err instanceof UpstreamDeadlineError, `call ${i + 1}: the deadline`)
    t.ok(elapsed >= 395 && elapsed < 700, `call ${i + 1}: after ${elapsed.toFixed(0)} ms, one deadline (400 ms), not a multiple`)
    t.same({ code: upstreamError(err, 'rag').code, status: upstreamError(err, 'rag').statusCode }, { code: 'UPSTREAM_TIMEOUT', status: 504 }, `call ${i + 1}: a 504`)
  }
  // A queued call may still go out when a slot frees before its own deadline: every call that did is aborted.
  const closed = await Promise.all(hung.exchanges.map(async (exchange) => exchange.closed))
  for (const [i, at] of closed.entries()) t.ok(at - started < 800, `request ${i + 1} at the upstream: its connection closed at the deadline`)
  await until('every slot free again', 1000, async () => upstream.active === 0 ? true : undefined, 10)
  t.equal(upstream.waiting, 0, 'nothing left waiting')
})

t.test('a cancelled call frees its slot at once: a waiting one never reaches the upstream, an in-flight one is aborted', async (t) => {
  const hung = await streamingUpstream(t)
  const upstream = client(t, hung, 1, 30_000)
  const inFlight = upstream.call('GET', '/first', {}, undefined)
  const queued = upstream.call('GET', '/second', {}, undefined)
  const exchange = await hung.nextExchange()
  t.equal(exchange.url, '/first')

  queued.cancel(new ClientClosedError())
  await t.rejects(queued.answer, ClientClosedError, 'the waiting call fails with the reason it was given up for')
  t.equal(upstream.waiting, 0, 'and leaves the queue')

  const cancelledAt = performance.now()
  inFlight.cancel(new ClientClosedError())
  await t.rejects(inFlight.answer, ClientClosedError)
  const closedAt = await exchange.closed
  t.ok(closedAt - cancelledAt < 100, `the upstream saw its connection closed ${(closedAt - cancelledAt).toFixed(1)} ms after the cancel`)
  t.equal(upstream.active, 0, 'the slot is free')

  const next = upstream.call('GET', '/third', {}, undefined)
  const third = await hung.nextExchange()
  t.equal(third.url, '/third', 'the next call goes straight out')
  t.equal(hung.exchanges.length, 2, 'the cancelled waiting call was never sent')
  third.res.end('{"ok":true}')
  const answer = await next.answer
  t.equal(answer.statusCode, 200)
})
