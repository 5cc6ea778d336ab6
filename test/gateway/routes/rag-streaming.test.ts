import t from 'tap'
import type { Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { gatewayOn, listenOn, startTestStack, TEST_ORIGIN } from '../../helper.ts'
import { until } from '../../poll.ts'
import { sseEvent, startEventStream, streamingUpstream, textReader, within } from '../../streaming-upstream.ts'
import type { StreamingUpstream } from '../../streaming-upstream.ts'

// Streaming passthrough (issue 14, finding 1): answers used to be buffered whole, without a limit,
// so a chatbot's first token waited for its last. One stack for the file; each test its own
// upstream and gateway (its own limits).
const stack = await startTestStack(t)
const QUESTION = JSON.stringify({ question: 'How does a humanoid estimate its joint positions?' })
// A guard against a hang: the failure mode of a gateway that buffers is an answer that never starts.
const GUARD_MS = 3000

async function ragGateway (t: Test, env: Record<string, string> = {}): Promise<{ url: string, upstream: StreamingUpstream }> {
  const upstream = await streamingUpstream(t)
  const gateway = await gatewayOn(t, stack, { RAG_UPSTREAM_URL: upstream.url, ...env })
  return { url: await listenOn(gateway), upstream }
}

function ask (url: string, init: RequestInit = {}): Promise<Response> {
  return fetch(`${url}/api/v1/query`, { method: 'POST', headers: { 'content-type': 'application/json', origin: TEST_ORIGIN }, body: QUESTION, ...init })
}

t.test('SSE: each event reaches the client as the upstream writes it, with the gateway\'s headers first', async (t) => {
  const { url, upstream } = await ragGateway(t)
  const pending = ask(url)
  const exchange = await upstream.nextExchange()
  t.equal(exchange.body, QUESTION, 'the question reached the upstream')
  startEventStream(exchange)
  const response = await within('the answer\'s headers, before any event', GUARD_MS, pending)
  t.equal(response.status, 200)
  t.equal(response.headers.get('content-type'), 'text/event-stream; charset=utf-8')
  t.equal(response.headers.get('cache-control'), 'no-cache', 'no caching of an event stream')
  t.equal(response.headers.get('x-accel-buffering'), 'no', 'a proxy in front must not buffer it either')
  t.equal(response.headers.get('access-control-allow-origin'), TEST_ORIGIN, 'CORS, set before the first byte')
  t.equal(response.headers.get('x-content-type-options'), 'nosniff', 'the security headers too')
  t.equal(response.headers.get('content-length'), null, 'no length: chunked')

  const reader = textReader(response)
  const tokens = ['Joint', ' encoders', ' and', ' an', ' IMU']
  for (const [i, token] of tokens.entries()) {
    const sentAt = await exchange.write(sseEvent({ token }))
    const chunk = await within(`event ${i + 1}`, GUARD_MS, reader.next())
    const receivedAt = performance.now()
    t.equal(chunk, sseEvent({ token }), `event ${i + 1} arrived alone, whole`)
    t.ok(receivedAt >= sentAt, `event ${i + 1} received ${(receivedAt - sentAt).toFixed(1)} ms after the upstream wrote it`)
  }
  // The proof by order: the client had event 1 before the upstream wrote event 2 (and so on), as
  // the loop above only writes an event once the previous one was read.
  exchange.res.end(sseEvent({ done: true }, 'done'))
  t.equal(await within('the rest', GUARD_MS, reader.next()), sseEvent({ done: true }, 'done'))
  t.equal(await reader.next(), null, 'the stream ends when the upstream\'s does')
})

t.test('NDJSON and chunked JSON stream too; a small JSON answer with a length stays buffered', async (t) => {
  const { url, upstream } = await ragGateway(t)
  const streamed = ask(url)
  const ndjson = await upstream.nextExchange()
  ndjson.res.writeHead(200, { 'content-type': 'application/x-ndjson' })
  await ndjson.write('{"token":"first"}\n')
  const response = await within('the NDJSON headers', GUARD_MS, streamed)
  t.equal(response.headers.get('x-accel-buffering'), 'no')
  const reader = textReader(response)
  t.equal(await within('the first line', GUARD_MS, reader.next()), '{"token":"first"}\n', 'the first line before the second is written')
  ndjson.res.end('{"token":"second"}\n')
  t.equal(await within('the second line', GUARD_MS, reader.next()), '{"token":"second"}\n')
  t.equal(await reader.next(), null)

  const chunked = ask(url)
  const json = await upstream.nextExchange()
  // No Content-Length: the length is unknown, so it cannot be known to fit the buffer.
  json.res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' })
  await json.write('{"answer":')
  const chunkedResponse = await within('the chunked headers', GUARD_MS, chunked)
  const chunkedReader = textReader(chunkedResponse)
  t.equal(await within('the first chunk', GUARD_MS, chunkedReader.next()), '{"answer":', 'a chunked answer is passed on chunk by chunk')
  json.res.end('"ok"}')
  t.equal(await within('the last chunk', GUARD_MS, chunkedReader.next()), '"ok"}')

  const small = ask(url)
  const buffered = await upstream.nextExchange()
  buffered.res.writeHead(200, { 'content-type': 'application/json', 'content-length': '13' })
  buffered.res.end('{"answer":42}')
  const smallResponse = await within('the small answer', GUARD_MS, small)
  t.same(await smallResponse.json(), { answer: 42 })
  t.equal(smallResponse.headers.get('content-length'), '13', 'buffered: sent in one piece, with its length')
  t.equal(smallResponse.headers.get('x-accel-buffering'), null, 'and not marked as a stream')
})

t.test('UPSTREAM_MAX_BUFFERED_BYTES: an answer longer than the cap is streamed, its length kept', async (t) => {
  const { url, upstream } = await ragGateway(t, { UPSTREAM_MAX_BUFFERED_BYTES: '10' })
  const pending = ask(url)
  const exchange = await upstream.nextExchange()
  exchange.res.writeHead(200, { 'content-type': 'application/json', 'content-length': '22' })
  await exchange.write('{"answer":')
  const response = await within('the headers of a long answer', GUARD_MS, pending)
  t.equal(response.headers.get('x-accel-buffering'), 'no', 'streamed')
  t.equal(response.headers.get('content-length'), '22', 'with the upstream\'s length')
  const reader = textReader(response)
  t.equal(await within('the first part', GUARD_MS, reader.next()), '{"answer":', 'before the upstream wrote the rest')
  exchange.res.end('"forty-two"}')
  t.equal(await within('the rest', GUARD_MS, reader.next()), '"forty-two"}')
})

t.test('a 2 MB answer (over the 1 MiB default cap) is streamed: the client has its first megabyte before the upstream writes the rest', async (t) => {
  const { url, upstream } = await ragGateway(t)
  const answer = randomBytes(2 * 1024 * 1024)
  const half = 1024 * 1024 + 512 * 1024
  const pending = ask(url)
  const exchange = await upstream.nextExchange()
  exchange.res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(answer.length) })
  for (let at = 0; at < half; at += 64 * 1024) await exchange.write(answer.subarray(at, Math.min(at + 64 * 1024, half)))
  const response = await within('the headers', GUARD_MS, pending)
  t.equal(response.headers.get('content-length'), String(answer.length))
  if (response.body === null) throw new Error('no body')
  const reader = response.body.getReader()
  const received: Uint8Array[] = []
  let bytes = 0
  while (bytes < 1024 * 1024) {
    const { done, value } = await within('the first megabyte', GUARD_MS, reader.read())
    if (done) break
    received.push(value)
    bytes += value.length
  }
  t.ok(bytes >= 1024 * 1024, `${bytes} bytes received while the upstream still holds the last ${answer.length - half}`)
  exchange.res.end(answer.subarray(half))
  for (;;) {
    const { done, value } = await within('the rest', GUARD_MS, reader.read())
    if (done) break
    received.push(value)
  }
  t.ok(Buffer.concat(received).equals(answer), 'every byte, in order')
})

// Backpressure: a client that stops reading stops the upstream (through the sockets' buffers),
// rather than the gateway reading the whole answer into memory.
t.test('backpressure: a client that does not read holds the upstream back; the answer completes when it reads again', async (t) => {
  const { url, upstream } = await ragGateway(t)
  const total = 32 * 1024 * 1024
  const chunk = randomBytes(64 * 1024)
  const pending = ask(url)
  const exchange = await upstream.nextExchange()
  exchange.res.writeHead(200, { 'content-type': 'application/x-ndjson' })
  let written = 0
  let blocked = false
  const writing = (async (): Promise<void> => {
    while (written < total) {
      if (!exchange.res.write(chunk)) {
        blocked = true
        await new Promise((resolve) => exchange.res.once('drain', resolve))
        blocked = false
      }
      written += chunk.length
    }
    exchange.res.end()
  })()
  const response = await within('the headers', GUARD_MS, pending)
  // The client reads nothing: once the buffers on the way are full, the upstream must stay blocked.
  let last = -1
  let steady = 0
  const held = await until('the upstream held back', 10_000, async () => {
    steady = blocked && written === last ? steady + 1 : 0
    last = written
    return steady >= 5 || written >= total ? written : undefined
  }, 50)
  t.ok(held < total, `the upstream stopped after ${(held / 1024 / 1024).toFixed(1)} MiB of ${total / 1024 / 1024} MiB while the client read nothing`)
  const body = Buffer.from(await within('the whole answer once read', 20_000, response.arrayBuffer()))
  await writing
  t.equal(body.length, total, 'every byte arrives once the client reads')
})

t.test('a long answer is fine while it keeps flowing: past UPSTREAM_TIMEOUT, each gap under UPSTREAM_IDLE_TIMEOUT', async (t) => {
  const { url, upstream } = await ragGateway(t, { UPSTREAM_TIMEOUT: '300 ms', UPSTREAM_IDLE_TIMEOUT: '300 ms' })
  const started = performance.now()
  const pending = ask(url)
  const exchange = await upstream.nextExchange()
  startEventStream(exchange)
  const response = await within('the headers', GUARD_MS, pending)
  const body = response.text()
  // The chatbot's pace: an event every 100 ms, for 8 × 100 ms, longer than the deadline.
  for (let i = 0; i < 8; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    await exchange.write(sseEvent({ token: i }))
  }
  exchange.res.end()
  const text = await within('the whole stream', GUARD_MS, body)
  t.ok(performance.now() - started > 600, 'the answer took longer than the deadline')
  t.equal(text, Array.from({ length: 8 }, (_, i) => sseEvent({ token: i })).join(''), 'every event, no error event')
})

