import t from 'tap'
import type { Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createServer } from 'node:net'
import type { AddressInfo, Socket } from 'node:net'
import { upstreamError } from '../../../gateway/errors.ts'
import { createUpstreamPool, DEFAULT_UPSTREAM_LIMITS, UpstreamClient } from '../../../gateway/proxy/upstream-client.ts'
import type { UpstreamLimits, UpstreamService } from '../../../gateway/proxy/upstream-client.ts'
import { closedPortUrl } from '../../upstream.ts'

// A megabyte: it cannot arrive in one read, so the answer is collected from many chunks.
const LARGE = randomBytes(1024 * 1024)
const CHUNKS = ['first chunk, ', 'second chunk, ', 'and the last']

/**
 * A loopback server that answers each request, over a raw socket, as its path says: the byte-level
 * control (1xx, chunk boundaries, stalls, a cut connection) `node:http` would not give.
 */
async function scriptedUpstream (t: Test): Promise<string> {
  const sockets = new Set<Socket>()
  const server = createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    let head = ''
    socket.on('data', (chunk: Buffer) => {
      head += chunk.toString('latin1')
      const end = head.indexOf('\r\n\r\n')
      if (end === -1) return
      const path = head.slice(0, head.indexOf('\r\n')).split(' ')[1]
      head = head.slice(end + 4)
      answer(socket, path)
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(async () => {
    for (const socket of sockets) socket.destroy()
    server.close()
    await once(server, 'close')
  })
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

function answer (socket: Socket, path: string): void {
  switch (path) {
    case '/large':
      socket.write(`HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${LARGE.length}\r\n\r\n`)
      for (let at = 0; at < LARGE.length; at += 64 * 1024) socket.write(LARGE.subarray(at, at + 64 * 1024))
      return
    case '/chunked':
      socket.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n')
      for (const chunk of CHUNKS) socket.write(`${Buffer.byteLength(chunk).toString(16)}\r\n${chunk}\r\n`)
      socket.write('0\r\n\r\n')
      return
    case '/empty':
      socket.write('HTTP/1.1 204 No Content\r\nX-Empty: yes\r\n\r\n')
      return
    case '/informational':
      socket.write('HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n')
      socket.write('HTTP/1.1 102 Processing\r\n\r\n')
      socket.write('HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nX-Final: yes\r\nContent-Length: 5\r\n\r\nfinal')
      return
    case '/headers':
      socket.write('HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Mixed-Case: Value\r\nContent-Length: 0\r\n\r\n')
      return
    case '/no-answer':
      return
    case '/stalls-mid-body':
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial')
      return
    case '/cut-mid-body':
      socket.end('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial', () => { socket.destroy() })
      return
    default:
      socket.end('this is not HTTP\r\n\r\n')
  }
}

function pool (t: Test, service: UpstreamService, url: string, timeoutMs?: number, limits: Partial<UpstreamLimits> = {}): UpstreamClient {
  const created = createUpstreamPool(service, url, timeoutMs)
  t.teardown(() => created.destroy())
  return new UpstreamClient(created, { ...DEFAULT_UPSTREAM_LIMITS, ...limits })
}

interface Collected {
  statusCode: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
  streamed: boolean
}

/** One GET; a streamed body is read to its end. */
async function get (upstream: UpstreamClient, path: string): Promise<Collected> {
  const answer = await upstream.call('GET', path, {}, undefined).answer
  if (Buffer.isBuffer(answer.body)) return { ...answer, body: answer.body, streamed: false }
  const chunks: Buffer[] = []
  for await (const chunk of answer.body) chunks.push(chunk as Buffer)
  return { ...answer, body: Buffer.concat(chunks), streamed: true }
}

const base = await scriptedUpstream(t)

t.test('bodies: many chunks collected whole, chunked encoding decoded, no body an empty buffer', async (t) => {
  const upstream = pool(t, 'rag', base)
  const large = await get(upstream, '/large')
  t.equal(large.statusCode, 200)
  t.notOk(large.streamed, 'a length up to UPSTREAM_MAX_BUFFERED_BYTES is buffered')
  t.equal(large.body.length, LARGE.length, 'every byte')
  t.ok(large.body.equals(LARGE), 'in order')

  const chunked = await get(upstream, '/chunked')
  t.equal(chunked.body.toString(), CHUNKS.join(''))
  t.equal(chunked.headers['transfer-encoding'], 'chunked')
  t.ok(chunked.streamed, 'without a length: streamed')

  const empty = await get(upstream, '/empty')
  t.equal(empty.statusCode, 204)
  t.ok(Buffer.isBuffer(empty.body), 'a buffer')
  t.equal(empty.body.length, 0, 'of no bytes')
  t.equal(empty.headers['x-empty'], 'yes')
})

t.test('informational (1xx) answers are skipped: the status, headers and body are the final answer\'s', async (t) => {
  const answered = await get(pool(t, 'rag', base), '/informational')
  t.equal(answered.statusCode, 201)
  t.equal(answered.headers['x-final'], 'yes')
  t.equal(answered.headers.link, undefined, 'no header of the 103')
  t.equal(answered.body.toString(), 'final')
})

t.test('headers: names lower-cased, repeated headers kept as a list', async (t) => {
  const answered = await get(pool(t, 'rag', base), '/headers')
  t.same(answered.headers['set-cookie'], ['a=1', 'b=2'])
  t.equal(answered.headers['x-mixed-case'], 'Value')
})

t.test('failures become the gateway\'s codes: refused 503, no answer 504, cut 503, not HTTP 502', async (t) => {
  const closed = await closedPortUrl()
  // Short deadlines: the deadline is the behaviour under test in the two timeout cases.
  const cases: Array<{ name: string, service: UpstreamService, url: string, path: string, undici: { code?: string, name?: string }, code: string, status: number }> = [
    { name: 'connection refused (RAG)', service: 'rag', url: closed, path: '/', undici: { code: 'ECONNREFUSED' }, code: 'UPSTREAM_UNAVAILABLE', status: 503 },
    { name: 'connection refused (auth-core)', service: 'auth', url: closed, path: '/', undici: { code: 'ECONNREFUSED' }, code: 'AUTH_CORE_UNAVAILABLE', status: 503 },
    { name: 'no answer within the deadline', service: 'rag', url: base, path: '/no-answer', undici: { code: 'UND_ERR_HEADERS_TIMEOUT' }, code: 'UPSTREAM_TIMEOUT', status: 504 },
    { name: 'a body that stops within the deadline', service: 'app', url: base, path: '/stalls-mid-body', undici: { code: 'UND_ERR_BODY_TIMEOUT' }, code: 'UPSTREAM_TIMEOUT', status: 504 },
    { name: 'the connection cut mid-body', service: 'rag', url: base, path: '/cut-mid-body', undici: { code: 'UND_ERR_SOCKET' }, code: 'UPSTREAM_UNAVAILABLE', status: 503 },
    { name: 'an answer that is not HTTP', service: 'rag', url: base, path: '/garbage', undici: { name: 'HTTPParserError' }, code: 'BAD_GATEWAY', status: 502 }
  ]
  for (const { name, service, url, path, undici, code, status } of cases) {
    // The call's own deadline out of the way: these are undici's per-attempt timeouts.
    const err = await get(pool(t, service, url, 200, { timeoutMs: 5000, idleTimeoutMs: 200 }), path).then(() => null, (caught: unknown) => caught)
    t.ok(err instanceof Error, `${name}: the call fails`)
    t.match(err, undici, `${name}: undici's ${JSON.stringify(undici)}`)
    const mapped = upstreamError(err, service)
    t.same({ code: mapped.code, statusCode: mapped.statusCode }, { code, statusCode: status }, `${name}: ${status} ${code}`)
    t.equal(mapped.cause, err, `${name}: the original error kept as the cause, for the log`)
  }
})
