import t from 'tap'
import { once } from 'node:events'
import { connect } from 'node:net'
import type { Socket } from 'node:net'
import { loadConfig } from '../../shared/config.ts'
import { gatewayOn, listenOn, startTestStack } from '../helper.ts'
import { until } from '../poll.ts'
import { streamingUpstream, within } from '../streaming-upstream.ts'

// Issue 14, finding 3: no request or body timeout. A `POST /api/v1/query` with `Content-Length: 3`
// and one body byte stayed open indefinitely (5 of 5 after 310 s), so one address could hold
// thousands of sockets. Now: REQUEST_TIMEOUT, HEADERS_TIMEOUT and MAX_CONNECTIONS.
const stack = await startTestStack(t)
const GUARD_MS = 5000

interface Closed {
  /** What the gateway wrote before closing (a 408, or nothing: a reset). */
  text: string
  /** From the first byte sent to the close. */
  elapsed: number
}

/** Opens a raw connection, sends `bytes` and waits for the gateway to close it. */
async function sendAndWaitForClose (url: string, bytes: string): Promise<{ socket: Socket, closed: Promise<Closed> }> {
  const { hostname, port } = new URL(url)
  const socket = connect(Number(port), hostname)
  await once(socket, 'connect')
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => chunks.push(chunk))
  socket.on('error', () => {})
  const started = performance.now()
  const closed = new Promise<Closed>((resolve) => {
    socket.once('close', () => { resolve({ text: Buffer.concat(chunks).toString('latin1'), elapsed: performance.now() - started }) })
  })
  socket.write(bytes)
  t.teardown(() => { socket.destroy() })
  return { socket, closed }
}

t.test('a body that never comes whole: 408 and closed after REQUEST_TIMEOUT', async (t) => {
  const upstream = await streamingUpstream(t)
  const gateway = await gatewayOn(t, stack, { RAG_UPSTREAM_URL: upstream.url, REQUEST_TIMEOUT: '500 ms', HEADERS_TIMEOUT: '200 ms' })
  const url = await listenOn(gateway)
  const slow = await Promise.all(Array.from({ length: 5 }, async () => sendAndWaitForClose(url, `POST /api/v1/query HTTP/1.1\r\nHost: ${new URL(url).host}\r\nContent-Type: application/json\r\nContent-Length: 3\r\n\r\n{`)))
  for (const [i, { closed }] of slow.entries()) {
    const { text, elapsed } = await within(`connection ${i + 1} closed`, GUARD_MS, closed)
    t.match(text, /^HTTP\/1\.1 408 Request Timeout\r\n/, `connection ${i + 1}: 408`)
    t.match(text, /\r\n\r\n\{"error":"request_timeout","message":"The request was not received in time","requestId":"[0-9a-f-]{36}"\}$/, 'in the error format')
    t.ok(elapsed >= 450 && elapsed < 2000, `connection ${i + 1}: closed after ${elapsed.toFixed(0)} ms (REQUEST_TIMEOUT 500 ms)`)
  }
  t.equal(upstream.exchanges.length, 0, 'nothing reached the upstream')
})

t.test('headers that never end: 408 and closed after HEADERS_TIMEOUT, before REQUEST_TIMEOUT', async (t) => {
  const gateway = await gatewayOn(t, stack, { REQUEST_TIMEOUT: '2 seconds', HEADERS_TIMEOUT: '300 ms' })
  const url = await listenOn(gateway)
  const { closed } = await sendAndWaitForClose(url, `GET /health HTTP/1.1\r\nHost: ${new URL(url).host}\r\nX-Slow: `)
  const { text, elapsed } = await within('the connection closed', GUARD_MS, closed)
  t.match(text, /^HTTP\/1\.1 408 /, '408')
  t.ok(elapsed >= 250 && elapsed < 1500, `closed after ${elapsed.toFixed(0)} ms (HEADERS_TIMEOUT 300 ms)`)

  const silent = await sendAndWaitForClose(url, '')
  const quiet = await within('a connection that sends nothing closed', GUARD_MS, silent.closed)
  t.ok(quiet.elapsed < 1500, `a connection that sends nothing is closed after ${quiet.elapsed.toFixed(0)} ms too`)
})

t.test('a request within the timeouts is served as before, and a keep-alive connection may idle between requests', async (t) => {
  const gateway = await gatewayOn(t, stack, { REQUEST_TIMEOUT: '300 ms', HEADERS_TIMEOUT: '300 ms' })
  const url = await listenOn(gateway)
  const { hostname, port } = new URL(url)
  const socket = connect(Number(port), hostname)
  t.teardown(() => { socket.destroy() })
  await once(socket, 'connect')
  const answers: string[] = []
  socket.on('data', (chunk: Buffer) => answers.push(chunk.toString('latin1')))
  const request = `GET /health HTTP/1.1\r\nHost: ${new URL(url).host}\r\n\r\n`
  socket.write(request)
  const answered = async (count: number): Promise<void> => {
    await until(`answer ${count}`, GUARD_MS, async () => answers.join('').split('{"status":"ok"').length > count ? true : undefined, 10)
  }
  await answered(1)
  // Idle longer than both timeouts (the time passing is what is tested): they count from a
  // request's first byte, not from the last answer.
  await new Promise((resolve) => setTimeout(resolve, 700))
  t.notOk(socket.destroyed, 'the idle keep-alive connection is still open')
  socket.write(request)
  await answered(2)
  t.equal(answers.join('').split('HTTP/1.1 200 OK').length - 1, 2, 'and serves the next request on it')
})

t.test('MAX_CONNECTIONS: connections beyond the cap are refused at once', async (t) => {
  const gateway = await gatewayOn(t, stack, { MAX_CONNECTIONS: '3' })
  const url = await listenOn(gateway)
  const { hostname, port } = new URL(url)
  const held: Socket[] = []
  t.teardown(() => { for (const socket of held) socket.destroy() })
  for (let i = 0; i < 3; i++) {
    const socket = connect(Number(port), hostname)
    held.push(socket)
    await once(socket, 'connect')
  }
  const connections = async (): Promise<number> => new Promise((resolve, reject) => { gateway.server.getConnections((err, count) => { if (err !== null) reject(err); else resolve(count) }) })
  // The server counts a connection once it has accepted it.
  await until('the gateway has the three', GUARD_MS, async () => await connections() === 3 ? true : undefined, 10)
  const { closed } = await sendAndWaitForClose(url, `GET /health HTTP/1.1\r\nHost: ${new URL(url).host}\r\n\r\n`)
  const refused = await within('the fourth connection closed', GUARD_MS, closed)
  t.equal(refused.text, '', 'the fourth is closed without an answer')
  t.ok(refused.elapsed < 1000, `at once (${refused.elapsed.toFixed(0)} ms)`)

  held.pop()?.destroy()
  await until('the gateway has two', GUARD_MS, async () => await connections() === 2 ? true : undefined, 10)
  const response = await fetch(`${url}/health`)
  t.equal(response.status, 200, 'below the cap again: served')
})

t.test('defaults and validation', async (t) => {
  const defaults = loadConfig({}, 'gateway')
  t.same({ request: defaults.requestTimeout, headers: defaults.headersTimeout, connections: defaults.maxConnections }, { request: 10_000, headers: 5000, connections: 10_000 }, 'REQUEST_TIMEOUT 10 s, HEADERS_TIMEOUT 5 s, MAX_CONNECTIONS 10000')
  t.same({ timeout: defaults.upstreamTimeout, idle: defaults.upstreamIdleTimeout, buffered: defaults.upstreamMaxBufferedBytes }, { timeout: 30_000, idle: 30_000, buffered: 1024 * 1024 }, 'UPSTREAM_TIMEOUT 30 s, UPSTREAM_IDLE_TIMEOUT 30 s, UPSTREAM_MAX_BUFFERED_BYTES 1 MiB')
  t.equal(loadConfig({ REQUEST_TIMEOUT: '2s' }, 'gateway').headersTimeout, 2000, 'a short REQUEST_TIMEOUT shortens the default HEADERS_TIMEOUT with it')
  t.throws(() => loadConfig({ REQUEST_TIMEOUT: '2s', HEADERS_TIMEOUT: '3s' }, 'gateway'), { name: 'ConfigError', variable: 'HEADERS_TIMEOUT', message: 'Invalid configuration: HEADERS_TIMEOUT must be at most REQUEST_TIMEOUT (2000 ms) (got "3s")' })
  t.throws(() => loadConfig({ UPSTREAM_TIMEOUT: 'soon' }, 'gateway'), { name: 'ConfigError', variable: 'UPSTREAM_TIMEOUT' })
  t.throws(() => loadConfig({ UPSTREAM_MAX_BUFFERED_BYTES: '1MB' }, 'gateway'), { name: 'ConfigError', variable: 'UPSTREAM_MAX_BUFFERED_BYTES' })
  t.throws(() => loadConfig({ MAX_CONNECTIONS: '0' }, 'gateway'), { name: 'ConfigError', variable: 'MAX_CONNECTIONS' })
  // A longer Node timer fires at once instead.
  t.throws(() => loadConfig({ UPSTREAM_IDLE_TIMEOUT: '30 days' }, 'gateway'), { name: 'ConfigError', variable: 'UPSTREAM_IDLE_TIMEOUT', message: /at most 24 days/ })
})
