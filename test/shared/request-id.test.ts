import t from 'tap'
import type { IncomingMessage } from 'node:http'
import { Writable } from 'node:stream'
import { trustedPeer } from '../../gateway/client-address.ts'
import { startStack } from '../../gateway/cli/stack.ts'
import { requestIdGenerator } from '../../shared/request-id.ts'
import { gatewayOn, listenOn, startTestStack, TEST_ORIGIN, testConfig, testDatabase, uniqueEmail } from '../helper.ts'
import { rawRequest } from '../raw-http.ts'
import { recordingUpstream } from '../upstream.ts'

// X-Request-Id (issue 17, deliver 5): accepted from a trusted proxy or generated, returned to the
// client, in every log line and error body, and passed on to auth-core and the upstreams.
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

t.test('trustedPeer: a hop count trusts the nearest peer, a list only its addresses and ranges', async (t) => {
  t.equal(trustedPeer(false)('127.0.0.1'), false, 'TRUST_PROXY=false: nobody')
  t.equal(trustedPeer(1)('203.0.113.9'), true, 'a hop count: the peer is the first hop')
  const listed = trustedPeer(['10.0.0.0/8', '127.0.0.1', 'fd00::/8'])
  t.equal(listed('10.1.2.3'), true)
  t.equal(listed('::ffff:10.1.2.3'), true, 'an IPv4-mapped spelling of a listed range')
  t.equal(listed('127.0.0.1'), true)
  t.equal(listed('127.0.0.2'), false)
  t.equal(listed('fd12::1'), true)
  t.equal(listed('203.0.113.9'), false)
  t.equal(listed(undefined), false, 'a socket already gone')
})

t.test('requestIdGenerator: a trusted peer\'s id when it looks like one, else a fresh UUID', async (t) => {
  const request = (id: string | string[] | undefined, remoteAddress = '10.0.0.1'): IncomingMessage => ({ headers: id === undefined ? {} : { 'x-request-id': id }, socket: { remoteAddress } }) as unknown as IncomingMessage
  const generate = requestIdGenerator(trustedPeer(['10.0.0.0/8']))
  t.equal(generate(request('haproxy-7f3a:1')), 'haproxy-7f3a:1', 'from the proxy')
  t.equal(generate(request('Root=1-67891233-abcdef012345678912345678')), 'Root=1-67891233-abcdef012345678912345678', 'an AWS trace id')
  t.match(generate(request('haproxy-7f3a', '203.0.113.9')), UUID, 'from anyone else: ignored')
  for (const [name, id] of [['a space', 'two words'], ['a newline', 'a\r\nSet-Cookie: x=1'], ['129 characters', 'a'.repeat(129)], ['empty', ''], ['quotes', '"x"']] as const) {
    t.match(generate(request(id)), UUID, `${name}: not an id, replaced`)
  }
  t.match(generate(request(['a', 'b'])), UUID, 'a repeated header: replaced')
  const fresh = new Set(Array.from({ length: 100 }, () => generate(request(undefined))))
  t.equal(fresh.size, 100, 'fresh ids differ')
})

t.test('through the gateway: returned on every answer, in the error bodies, passed to the upstream and auth-core, in the logs', async (t) => {
  const lines: Array<{ reqId?: string, msg?: string }> = []
  const stream = new Writable({
    write (chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') lines.push(JSON.parse(line) as { reqId?: string })
      done()
    }
  })
  const rag = await recordingUpstream(t)
  const config = testConfig(t, { DATABASE_URL: await testDatabase(t), LOG_LEVEL: 'info', RAG_UPSTREAM_URL: rag.url })
  const stack = await startStack(config, { logger: { level: 'info', stream } })
  t.teardown(() => stack.close())

  const answered = await fetch(`${stack.url}/api/v1/query`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': 'chosen-by-the-client' }, body: '{"question":"ZMP?"}' })
  const id = answered.headers.get('x-request-id') ?? ''
  t.equal(answered.status, 200)
  t.match(id, UUID, 'a fresh id: a client that is not a trusted proxy does not choose it')
  t.equal(rag.requests.at(-1)?.headers['x-request-id'], id, 'the upstream gets the same id')

  for (const [what, response] of [
    ['401', await fetch(`${stack.url}/api/v1/profile`)],
    ['404', await fetch(`${stack.url}/nowhere`)],
    ['400 from a bad URL', await fetch(`${stack.url}/api/%zz`)]
  ] as const) {
    const header = response.headers.get('x-request-id')
    t.match(header, UUID, `${what}: an id`)
    t.equal((await response.json() as { requestId?: string }).requestId, header, `${what}: the body names it`)
  }
  const malformed = await rawRequest(stack.url, 'GET', '/health', [['Content-Length', 'nope']])
  t.equal(malformed.status, 400)
  t.equal((JSON.parse(malformed.body) as { requestId?: string }).requestId, malformed.headers['x-request-id'], 'even a request Node could not parse gets one, in header and body')

  // auth-core's own answer (a wrong password), through the gateway: auth-core kept the gateway's id.
  const signIn = await fetch(`${stack.url}/auth/sign-in/email`, { method: 'POST', headers: { 'content-type': 'application/json', origin: TEST_ORIGIN }, body: JSON.stringify({ email: uniqueEmail('request-id'), password: 'not the password' }) })
  const signInId = signIn.headers.get('x-request-id')
  t.equal(signIn.status, 401)
  t.match(signInId, UUID)
  t.equal((await signIn.json() as { requestId?: string }).requestId, signInId, 'auth-core\'s error body carries the gateway\'s id')
  const logged = lines.filter((line) => line.reqId === signInId)
  t.ok(logged.length >= 4, `the gateway's and auth-core's log lines of that request all carry it (${logged.length} lines)`)
  t.ok(lines.filter((line) => line.reqId === id).length >= 2, 'so do the RAG call\'s')
})

t.test('behind a trusted proxy, its X-Request-Id is kept end to end', async (t) => {
  const rag = await recordingUpstream(t)
  const stack = await startTestStack(t)
  const url = await listenOn(await gatewayOn(t, stack, { RAG_UPSTREAM_URL: rag.url, TRUST_PROXY: '127.0.0.1' }))
  const kept = await fetch(`${url}/api/v1/query`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': 'lb-0a1b2c' }, body: '{}' })
  t.equal(kept.headers.get('x-request-id'), 'lb-0a1b2c', 'returned as the proxy sent it')
  t.equal(rag.requests.at(-1)?.headers['x-request-id'], 'lb-0a1b2c', 'and passed on')
  const refused = await fetch(`${url}/api/v1/profile`, { headers: { 'x-request-id': 'lb-0a1b2d' } })
  t.equal((await refused.json() as { requestId?: string }).requestId, 'lb-0a1b2d', 'an error body names it')
  const invalid = await fetch(`${url}/api/v1/query`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': 'x'.repeat(200) }, body: '{}' })
  t.match(invalid.headers.get('x-request-id'), UUID, 'one that is not an id is replaced, even from the proxy')
})
