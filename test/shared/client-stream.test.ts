import t from 'tap'
import type { Test } from 'tap'
import { createGatewayClient, STREAM_INTERRUPTED } from '@auth-gateway/client'
import type { GatewayClient, RagEvent } from '@auth-gateway/client'
import { EventStreamParser } from '../../shared/client/src/rag-stream.ts'
import { cookieFetch, gatewayOn, listenOn, startTestStack, uniqueEmail, verifyIdentityToken } from '../helper.ts'
import { sseEvent, startEventStream, streamingUpstream, within } from '../streaming-upstream.ts'
import type { StreamingUpstream } from '../streaming-upstream.ts'

// `rag.stream` (issue 14, deliver 7): the answer read as events while it streams, through a real
// gateway from a real streaming upstream. A guard turns a hang into a failure.
const GUARD_MS = 3000
const QUESTION = { question: 'How does a humanoid estimate its joint positions?' }

t.test('the parser reads server-sent events as the HTML standard says, across any chunking', async (t) => {
  const text = '\uFEFF: a comment\r\nretry: 1000\r\nevent: token\r\ndata: one\r\ndata:two\r\nid: 7\r\n\r\n' +
    'data: {"done":true}\n\n' +
    'event: ignored-without-data\n\n' +
    'data\rdata: x\r\r' +
    'data: left without its blank line'
  const expected: RagEvent[] = [
    { event: 'token', data: 'one\ntwo', id: '7' },
    { event: 'message', data: '{"done":true}', id: '7' },
    { event: 'message', data: '\nx', id: '7' }
  ]
  const whole = new EventStreamParser()
  t.same(whole.push(text), expected, 'in one piece')
  for (const size of [1, 2, 3, 5, 13]) {
    const parser = new EventStreamParser()
    const events: RagEvent[] = []
    for (let i = 0; i < text.length; i += size) events.push(...parser.push(text.slice(i, i + size)))
    t.same(events, expected, `in pieces of ${size} characters (a CRLF split between two)`)
  }
})

const stack = await startTestStack(t)

async function streamingGateway (t: Test): Promise<{ client: GatewayClient, upstream: StreamingUpstream, url: string }> {
  const upstream = await streamingUpstream(t)
  const url = await listenOn(await gatewayOn(t, stack, { RAG_UPSTREAM_URL: upstream.url, UPSTREAM_IDLE_TIMEOUT: '500 ms' }))
  return { client: createGatewayClient({ baseURL: url, fetch: cookieFetch() }), upstream, url }
}

t.test('SSE: each event is yielded as the upstream writes it, parsed, until the stream ends', async (t) => {
  const { client, upstream } = await streamingGateway(t)
  const events = client.rag.stream('/api/v1/query', QUESTION)
  const first = events.next()
  const exchange = await upstream.nextExchange()
  t.same(JSON.parse(exchange.body), QUESTION, 'the question went as JSON')
  t.match(exchange.headers.accept, /text\/event-stream/, 'asking for an event stream')
  startEventStream(exchange)
  const tokens = ['Joint', ' encoders', ' and an IMU']
  let next = first
  for (const [i, token] of tokens.entries()) {
    await exchange.write(sseEvent({ token }, 'token'))
    // The next event is only written once this one was yielded: each came before the upstream's next.
    t.same(await within(`event ${i + 1}`, GUARD_MS, next), { done: false, value: { event: 'token', data: JSON.stringify({ token }) } })
    next = events.next()
  }
  exchange.res.end(sseEvent({ sources: ['ch3'] }))
  t.same(await within('the last event', GUARD_MS, next), { done: false, value: { event: 'message', data: '{"sources":["ch3"]}' } })
  t.same(await events.next(), { done: true, value: undefined }, 'the iteration ends with the stream')
})

t.test('NDJSON is an event a line; a buffered JSON answer is one event', async (t) => {
  const { client, upstream } = await streamingGateway(t)
  const lines = (async () => {
    const seen: string[] = []
    for await (const event of client.rag.stream('/api/v1/select', { text: 'ZMP' })) seen.push(event.data)
    return seen
  })()
  const ndjson = await upstream.nextExchange()
  t.equal(ndjson.url, '/api/v1/select')
  ndjson.res.writeHead(200, { 'content-type': 'application/x-ndjson' })
  await ndjson.write('{"token":"a"}\n{"tok')
  await ndjson.write('en":"b"}\n\n')
  ndjson.res.end('{"done":true}')
  t.same(await within('the NDJSON lines', GUARD_MS, lines), ['{"token":"a"}', '{"token":"b"}', '{"done":true}'])

  const whole = (async () => {
    const seen: RagEvent[] = []
    for await (const event of client.rag.stream('/api/v1/query', QUESTION)) seen.push(event)
    return seen
  })()
  const json = await upstream.nextExchange()
  json.res.writeHead(200, { 'content-type': 'application/json' }).end('{"answer":"ZMP"}')
  t.same(await within('the JSON answer', GUARD_MS, whole), [{ event: 'message', data: '{"answer":"ZMP"}' }])
})

async function collect (events: AsyncIterable<RagEvent>): Promise<RagEvent[]> {
  const seen: RagEvent[] = []
  for await (const event of events) seen.push(event)
  return seen
}

t.test('failures end the iteration with an error event, never a throw', async (t) => {
  const { client, upstream } = await streamingGateway(t)

  const refused = collect(client.rag.stream('/api/v1/query', QUESTION))
  const first = await upstream.nextExchange()
  first.res.writeHead(200, { 'content-type': 'text/event-stream' })
  await first.write(sseEvent({ token: 'half' }))
  // The upstream goes silent: the gateway's idle timeout ends the stream with its error event.
  const afterSilence = await within('the gateway\'s error event', GUARD_MS, refused)
  t.equal(afterSilence.length, 2)
  t.same(afterSilence[0], { event: 'message', data: '{"token":"half"}' })
  t.match(afterSilence[1], { event: 'error', error: { error: 'upstream_timeout', status: 200 } }, 'the gateway\'s `event: error`, read as an error')

  const cut = client.rag.stream('/api/v1/query', QUESTION)
  const line = cut.next()
  const second = await upstream.nextExchange()
  second.res.writeHead(200, { 'content-type': 'application/x-ndjson' })
  await second.write('{"token":"a"}\n')
  t.same(await within('the first line', GUARD_MS, line), { done: false, value: { event: 'message', data: '{"token":"a"}' } })
  second.res.socket?.destroy()
  t.match(await within('the cut stream', GUARD_MS, collect(cut)), [
    { event: 'error', error: { error: STREAM_INTERRUPTED, status: 200 } }
  ], 'a body cut short is reported, not taken as the end')

  const unconfigured = createGatewayClient({ baseURL: await listenOn(await gatewayOn(t, stack, {})), fetch: cookieFetch() })
  t.match(await collect(unconfigured.rag.stream('/api/v1/query', QUESTION)), [
    { event: 'error', error: { error: 'rag_upstream_not_configured', status: 503 } }
  ], 'an error answer is its `{ error, message }`')

  const offline = createGatewayClient({ baseURL: 'http://127.0.0.1:9' })
  t.match(await collect(offline.rag.stream('/api/v1/query', QUESTION)), [
    { event: 'error', error: { error: 'network_error', status: 0 } }
  ], 'no gateway: network_error')
})

t.test('aborting the signal, or leaving the loop, closes the upstream call', async (t) => {
  const { client, upstream } = await streamingGateway(t)
  const controller = new AbortController()
  const aborted = collect(client.rag.stream('/api/v1/query', QUESTION, { signal: controller.signal }))
  const first = await upstream.nextExchange()
  startEventStream(first)
  await first.write(sseEvent({ token: 'a' }))
  controller.abort()
  t.same(await within('the aborted iteration', GUARD_MS, aborted), [], 'the iteration ends without an error event')
  await t.resolves(within('the upstream sees its request closed', GUARD_MS, first.closed), 'abort closed the upstream call')

  const events = client.rag.stream('/api/v1/query', QUESTION)
  const pending = events.next()
  const second = await upstream.nextExchange()
  startEventStream(second)
  await second.write(sseEvent({ token: 'b' }))
  t.match(await pending, { done: false, value: { data: '{"token":"b"}' } })
  await events.return()
  await t.resolves(within('the upstream sees its request closed', GUARD_MS, second.closed), 'leaving the loop closed the upstream call')
})

t.test('a signed-in reader\'s stream carries the identity, as the buffered calls do', async (t) => {
  const { upstream, url } = await streamingGateway(t)
  const fetchWithCookie = cookieFetch()
  const client = createGatewayClient({ baseURL: url, fetch: fetchWithCookie })
  const email = uniqueEmail('stream')
  const signUp = await client.auth.signUp.email({ email, password: 'correct horse battery', name: 'Streaming Reader' })
  t.equal(signUp.error, null, 'signed up')
  const answer = collect(client.rag.stream('/api/v1/query', QUESTION))
  const exchange = await upstream.nextExchange()
  startEventStream(exchange)
  exchange.res.end(sseEvent({ token: 'hi' }))
  t.same(await within('the answer', GUARD_MS, answer), [{ event: 'message', data: '{"token":"hi"}' }])
  const bearer = /^Bearer (\S+)$/.exec(String(exchange.headers.authorization))
  t.ok(bearer, 'the upstream got an identity token')
  const { payload } = await verifyIdentityToken(url, bearer?.[1] ?? '', 'rag')
  t.equal(payload.email, email)
})
