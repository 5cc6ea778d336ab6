import t from 'tap'
import { Agent } from 'undici'
import { upstreamPolicy } from '../../../gateway/proxy/upstream-client.ts'
import { gatewayOn, listenOn, startTestStack } from '../../helper.ts'
import { until } from '../../poll.ts'
import { streamingUpstream } from '../../streaming-upstream.ts'

// Issue 14, finding 5: with an upstream slower than the deadline, calls queued behind the pool got
// their 504 after 30, 50 and 70 s (a deadline per attempt), and 200 calls abandoned by their clients
// kept the pool busy after the upstream healed. Now: one deadline per client request, and a client
// that leaves frees its slot at once.
const stack = await startTestStack(t)
const CONNECTIONS = upstreamPolicy('rag').connections
const QUESTION = '{"question":"why"}'

// One client connection per caller: the gateway, not the test's client, is what queues.
const callers = new Agent({ connections: null, pipelining: 0 })
t.teardown(() => callers.destroy())

async function ask (url: string, signal?: AbortSignal, id?: string): Promise<{ status: number, error: string | undefined, elapsed: number }> {
  const started = performance.now()
  const headers: Record<string, string> = { 'content-type': 'application/json' }
  if (id !== undefined) headers['x-request-id'] = id
  const response = await callers.request({ origin: url, path: '/api/v1/query', method: 'POST', headers, body: QUESTION, signal })
  const body = await response.body.json() as { error?: string }
  return { status: response.statusCode, error: body.error, elapsed: performance.now() - started }
}

t.test(`a hung upstream and more callers than its ${CONNECTIONS} connections: every caller gets its 504 at the deadline, not a multiple`, async (t) => {
  const hung = await streamingUpstream(t)
  // Long enough that a busy machine's own delays (hundreds of ms for 160 connections at once) stay well inside one deadline.
  const deadline = 3000
  const gateway = await gatewayOn(t, stack, { RAG_UPSTREAM_URL: hung.url, UPSTREAM_TIMEOUT: `${deadline} ms` })
  // Timed at the gateway, from the request's arrival to its answer: on a busy machine, opening
  // 160 connections at once spreads the arrivals themselves over hundreds of milliseconds.
  const served: number[] = []
  gateway.server.on('request', (_request, response) => {
    const arrived = performance.now()
    response.once('finish', () => { served.push(performance.now() - arrived) })
  })
  const url = await listenOn(gateway)
  const count = CONNECTIONS + 32
  const answers = await Promise.all(Array.from({ length: count }, async () => ask(url)))
  t.same(new Set(answers.map(({ status, error }) => `${status} ${error}`)), new Set(['504 upstream_timeout']), `all ${count} callers: 504 upstream_timeout`)
  t.equal(served.length, count)
  const [fastest, slowest] = [Math.min(...served), Math.max(...served)]
  t.ok(fastest >= deadline - 5, `none before the deadline (the first after ${fastest.toFixed(0)} ms)`)
  t.ok(slowest < deadline * 2, `the last after ${slowest.toFixed(0)} ms: one deadline, not two or three`)
})

t.test('callers who give up free their pool slots at once: once the upstream heals, the next calls are answered at once', async (t) => {
  const hung = await streamingUpstream(t)
  // A deadline far away: only the callers' leaving can free the slots.
  const gateway = await gatewayOn(t, stack, { RAG_UPSTREAM_URL: hung.url, UPSTREAM_TIMEOUT: '60 seconds' })
  // Which callers the gateway had (their request read) when they gave up: a caller's own client
  // may still be connecting then, and send its request afterwards.
  const arrived = new Set<string>()
  gateway.server.on('request', (request) => { arrived.add(String(request.headers['x-request-id'])) })
  const url = await listenOn(gateway)
  const abandon = new AbortController()
  const abandoned = Array.from({ length: 200 }, async (_, i) => ask(url, abandon.signal, `abandoned-${i}`).then(() => 'answered', (err: unknown) => (err as Error).name))
  await until(`the upstream holds ${CONNECTIONS} calls, the gateway all 200`, 10_000, async () => hung.exchanges.length >= CONNECTIONS && arrived.size === 200 ? true : undefined, 20)
  const inFlight = hung.exchanges.slice()
  t.equal(inFlight.length, CONNECTIONS, 'as many at the upstream as the pool has connections; the rest wait at the gateway')

  const abandonedAt = performance.now()
  abandon.abort()
  t.same(new Set(await Promise.all(abandoned)), new Set(['AbortError']), 'all 200 callers gave up')
  const closed = await Promise.all(inFlight.map(async (exchange) => exchange.closed))
  const slowest = Math.max(...closed) - abandonedAt
  // 128 connections closed on a busy machine take a moment; the deadline they no longer wait for is 60 s.
  t.ok(slowest < 5000, `every call at the upstream had its connection closed (the last ${slowest.toFixed(0)} ms after the callers left)`)

  // The upstream heals: from now on it answers every question at once.
  const stale = new Set(inFlight)
  void (async () => {
    for (;;) {
      const exchange = await hung.nextExchange()
      if (!stale.has(exchange)) exchange.res.writeHead(200, { 'content-type': 'application/json' }).end('{"answer":"ok"}')
    }
  })()
  const started = performance.now()
  const next = await Promise.all(Array.from({ length: 20 }, async (_, i) => ask(url, undefined, `next-${i}`)))
  const took = performance.now() - started
  t.same(new Set(next.map(({ status }) => status)), new Set([200]), 'the next 20 calls are answered')
  t.ok(took < 3000, `within ${took.toFixed(0)} ms: no abandoned call stood in their way`)
  const late = hung.exchanges.slice(CONNECTIONS).map((exchange) => String(exchange.headers['x-request-id'])).filter((id) => id.startsWith('abandoned-'))
  t.same(late, [], `the ${200 - CONNECTIONS} callers who left while waiting at the gateway never reached the upstream`)
})
