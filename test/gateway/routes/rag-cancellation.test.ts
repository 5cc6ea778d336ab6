import t from 'tap'
import type { Test } from 'tap'
import { gatewayOn, listenOn, startTestStack, TEST_ORIGIN } from '../../helper.ts'
import { leavingClient, sseEvent, startEventStream, streamingUpstream, textReader, withLoopLag, within } from '../../streaming-upstream.ts'
import type { StreamingUpstream } from '../../streaming-upstream.ts'

// Issue 14, finding 2: a client that went away (a reader closing the tab) left the gateway calling
// the upstream; an upstream that stops mid-answer must end the client's answer, never hang it.
const stack = await startTestStack(t)
const QUESTION = '{"question":"why"}'
const GUARD_MS = 3000

async function ragGateway (t: Test, env: Record<string, string> = {}): Promise<{ url: string, upstream: StreamingUpstream }> {
  const upstream = await streamingUpstream(t)
  const gateway = await gatewayOn(t, stack, { RAG_UPSTREAM_URL: upstream.url, ...env })
  return { url: await listenOn(gateway), upstream }
}

function ask (url: string, signal?: AbortSignal): Promise<Response> {
  return fetch(`${url}/api/v1/query`, { method: 'POST', headers: { 'content-type': 'application/json', origin: TEST_ORIGIN }, body: QUESTION, signal })
}

t.test('a client that leaves while the upstream thinks: the upstream\'s connection is closed within 100 ms', async (t) => {
  const { url, upstream } = await ragGateway(t)
  const client = leavingClient(url, { method: 'POST', path: '/api/v1/query', headers: { 'content-type': 'application/json' }, body: QUESTION })
  const exchange = await upstream.nextExchange()
  const leftAt = client.leave()
  const { value: closedAt, lagMs } = await withLoopLag(within('the upstream connection closed', GUARD_MS, exchange.closed))
  // 100 ms, plus how late this busy process's event loop ran meanwhile, for the two turns it takes (0 on an idle machine).
  t.ok(closedAt - leftAt < 100 + 2 * lagMs, `the upstream saw its connection closed ${(closedAt - leftAt).toFixed(1)} ms after the client left (event loop lag ${lagMs.toFixed(0)} ms)`)
})

t.test('a client that leaves mid-stream: the upstream\'s connection is closed within 100 ms', async (t) => {
  const { url, upstream } = await ragGateway(t)
  const client = leavingClient(url, { method: 'POST', path: '/api/v1/query', headers: { 'content-type': 'application/json' }, body: QUESTION })
  const exchange = await upstream.nextExchange()
  startEventStream(exchange)
  await exchange.write(sseEvent({ token: 'first' }))
  t.equal((await within('the headers', GUARD_MS, client.response)).statusCode, 200)
  t.equal(await within('the first event', GUARD_MS, client.next()), sseEvent({ token: 'first' }))
  const leftAt = client.leave()
  const { value: closedAt, lagMs } = await withLoopLag(within('the upstream connection closed', GUARD_MS, exchange.closed))
  // 100 ms, plus how late this busy process's event loop ran meanwhile, for the two turns it takes (0 on an idle machine).
  t.ok(closedAt - leftAt < 100 + 2 * lagMs, `the upstream saw its connection closed ${(closedAt - leftAt).toFixed(1)} ms after the client left (event loop lag ${lagMs.toFixed(0)} ms)`)
})

t.test('a fetch aborted by its page (AbortController) ends the upstream call too', async (t) => {
  const { url, upstream } = await ragGateway(t)
  const controller = new AbortController()
  const pending = ask(url, controller.signal).catch((err: unknown) => err)
  const exchange = await upstream.nextExchange()
  controller.abort()
  t.match(await pending, { name: 'AbortError' }, 'the client gave up')
  await within('the upstream connection closed', GUARD_MS, exchange.closed)
})

t.test('an event stream cut by the upstream ends with an error event, after every complete event', async (t) => {
  const { url, upstream } = await ragGateway(t)
  const pending = ask(url)
  const exchange = await upstream.nextExchange()
  startEventStream(exchange)
  await exchange.write(sseEvent({ token: 'first' }))
  const reader = textReader(await within('the headers', GUARD_MS, pending))
  t.equal(await within('the first event', GUARD_MS, reader.next()), sseEvent({ token: 'first' }))
  exchange.res.socket?.destroy()
  const chunk = await within('the end of the stream', GUARD_MS, reader.next())
  t.equal(chunk, sseEvent({ error: 'upstream_unavailable', message: 'The rag service is unavailable, try again shortly' }, 'error'), 'the SSE error convention: `event: error`, the gateway\'s code')
  t.equal(await within('the end', GUARD_MS, reader.next()), null, 'then the stream ends')
})

t.test('an event stream cut mid-event, or an NDJSON answer cut: the client\'s body is truncated (an error, not a hang)', async (t) => {
  const { url, upstream } = await ragGateway(t)
  for (const [type, partial] of [['text/event-stream', 'data: {"token":"fir'], ['application/x-ndjson', '{"token":"first"}\n{"tok']]) {
    const pending = ask(url)
    const exchange = await upstream.nextExchange()
    exchange.res.writeHead(200, { 'content-type': type })
    await exchange.write(partial)
    const reader = textReader(await within(`${type}: the headers`, GUARD_MS, pending))
    t.equal(await within(`${type}: the partial chunk`, GUARD_MS, reader.next()), partial)
    exchange.res.socket?.destroy()
    const ended = await within(`${type}: the end`, GUARD_MS, reader.next().then(() => 'ended cleanly', (err: unknown) => err))
    t.match(ended, { name: 'TypeError', message: 'terminated' }, `${type}: the body breaks off, so the client knows it is incomplete`)
  }
})

t.test('an upstream that goes silent mid-stream: an error event after UPSTREAM_IDLE_TIMEOUT', async (t) => {
  const { url, upstream } = await ragGateway(t, { UPSTREAM_IDLE_TIMEOUT: '300 ms' })
  const pending = ask(url)
  const exchange = await upstream.nextExchange()
  startEventStream(exchange)
  const lastWrite = await exchange.write(sseEvent({ token: 'first' }))
  const reader = textReader(await within('the headers', GUARD_MS, pending))
  t.equal(await within('the first event', GUARD_MS, reader.next()), sseEvent({ token: 'first' }))
  const chunk = await within('the error event', GUARD_MS, reader.next())
  const silence = performance.now() - lastWrite
  t.equal(chunk, sseEvent({ error: 'upstream_timeout', message: 'The rag service did not answer in time' }, 'error'))
  t.ok(silence >= 290 && silence < 1500, `after ${silence.toFixed(0)} ms of silence (idle timeout 300 ms)`)
  t.equal(await reader.next(), null)
  await within('the upstream connection closed', GUARD_MS, exchange.closed)
})

t.test('a buffered answer whose body stops: 504 at the deadline', async (t) => {
  const { url, upstream } = await ragGateway(t, { UPSTREAM_TIMEOUT: '300 ms' })
  const started = performance.now()
  const pending = ask(url)
  const exchange = await upstream.nextExchange()
  exchange.res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' })
  await exchange.write('{"answer":"par')
  const response = await within('the answer', GUARD_MS, pending)
  const elapsed = performance.now() - started
  t.equal(response.status, 504)
  t.same(await response.json(), { error: 'upstream_timeout', message: 'The rag service did not answer in time', requestId: response.headers.get('x-request-id') })
  t.ok(elapsed >= 290 && elapsed < 1500, `after ${elapsed.toFixed(0)} ms (deadline 300 ms)`)
})
