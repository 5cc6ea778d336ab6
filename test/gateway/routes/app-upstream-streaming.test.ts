import t from 'tap'
import { startTestStack, TEST_ORIGIN } from '../../helper.ts'
import { signUp } from '../../readers.ts'
import { leavingClient, sseEvent, startEventStream, streamingUpstream, textReader, withLoopLag, within } from '../../streaming-upstream.ts'

// The app upstream streams as the RAG routes do (issue 14): same client, same rules.
const app = await streamingUpstream(t)
const stack = await startTestStack(t, { APP_UPSTREAM_URL: app.url })
const reader = await signUp(stack)
const GUARD_MS = 3000

t.test('a signed-in event stream from the app upstream: the gateway\'s headers first, then each event as it comes', async (t) => {
  const pending = fetch(`${stack.url}/api/notes/stream`, { headers: { cookie: reader.cookie, origin: TEST_ORIGIN } })
  const exchange = await app.nextExchange()
  t.match(exchange.headers.authorization, /^Bearer /, 'the caller\'s identity token reached the upstream')
  startEventStream(exchange, { 'set-cookie': 'upstream=1' })
  const response = await within('the headers', GUARD_MS, pending)
  t.equal(response.status, 200)
  t.same({
    cors: response.headers.get('access-control-allow-origin'),
    credentials: response.headers.get('access-control-allow-credentials'),
    frame: response.headers.get('x-frame-options'),
    buffering: response.headers.get('x-accel-buffering'),
    cache: response.headers.get('cache-control'),
    cookie: response.headers.get('set-cookie')
  }, { cors: TEST_ORIGIN, credentials: 'true', frame: 'DENY', buffering: 'no', cache: 'no-cache', cookie: null }, 'CORS, security headers, no buffering or caching, and never the upstream\'s cookies')
  const events = textReader(response)
  await exchange.write(sseEvent({ note: 1 }))
  t.equal(await within('the first event', GUARD_MS, events.next()), sseEvent({ note: 1 }), 'before the upstream wrote the second')
  await exchange.write(sseEvent({ note: 2 }))
  t.equal(await within('the second event', GUARD_MS, events.next()), sseEvent({ note: 2 }))
  exchange.res.end()
  t.equal(await within('the end', GUARD_MS, events.next()), null)
})

t.test('a client that leaves the app upstream\'s stream: the upstream\'s connection is closed within 100 ms', async (t) => {
  const client = leavingClient(stack.url, { path: '/api/notes/stream', headers: { cookie: reader.cookie } })
  const exchange = await app.nextExchange()
  exchange.res.writeHead(200, { 'content-type': 'application/x-ndjson' })
  await exchange.write('{"note":1}\n')
  t.equal((await within('the headers', GUARD_MS, client.response)).statusCode, 200)
  t.equal(await within('the first line', GUARD_MS, client.next()), '{"note":1}\n')
  const leftAt = client.leave()
  const { value: closedAt, lagMs } = await withLoopLag(within('the upstream connection closed', GUARD_MS, exchange.closed))
  // 100 ms, plus how late this busy process's event loop ran meanwhile, for the two turns it takes (0 on an idle machine).
  t.ok(closedAt - leftAt < 100 + 2 * lagMs, `closed ${(closedAt - leftAt).toFixed(1)} ms after the client left (event loop lag ${lagMs.toFixed(0)} ms)`)
})
