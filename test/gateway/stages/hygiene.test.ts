import t from 'tap'
import type { Test } from 'tap'
import { MAX_AUTHORIZATION_BYTES, MAX_COOKIE_BYTES } from '../../../gateway/stages/hygiene.ts'
import { cookieFetch, gatewayOn, postJson, TEST_ORIGIN, uniqueEmail } from '../../helper.ts'
import { rawRequest } from '../../raw-http.ts'
import { PASSWORD } from '../../readers.ts'
import { stackWithUpstreams } from '../../upstream.ts'

// One stack for the file, with a recording RAG and app upstream.
const { stack, rag } = await stackWithUpstreams(t)

function assertSecurityHeaders (t: Test, headers: (name: string) => string | null, label: string): void {
  t.equal(headers('x-content-type-options'), 'nosniff', `${label}: nosniff`)
  t.equal(headers('x-frame-options'), 'DENY', `${label}: no framing`)
  t.match(headers('content-security-policy') ?? '', /frame-ancestors 'none'/, `${label}: CSP frame-ancestors`)
  t.equal(headers('referrer-policy'), 'no-referrer', `${label}: no referrer`)
  t.equal(headers('strict-transport-security'), null, `${label}: no HSTS on an http PUBLIC_URL`)
}

t.test('an oversized Cookie or Authorization header is refused with 431 before any look-up', async (t) => {
  let authCoreCalls = 0
  const count = (): void => { authCoreCalls++ }
  stack.authCore.server.on('request', count)
  t.teardown(() => { stack.authCore.server.off('request', count) })

  const forged = `better-auth.session_token=${'a'.repeat(15 * 1024)}`
  for (const target of ['/auth/get-session', '/api/v1/profile', '/auth/jwt', '/health']) {
    const answer = await rawRequest(stack.url, 'GET', target, [['Cookie', forged], ['Origin', TEST_ORIGIN]])
    t.equal(answer.status, 431, `${target}: 431`)
    const body = JSON.parse(answer.body) as { error: string, message: string }
    t.equal(body.error, 'header_too_large')
    t.type(body.message, 'string')
    t.equal(answer.headers['x-content-type-options'], 'nosniff', 'security headers still set')
  }
  const split = await rawRequest(stack.url, 'GET', '/auth/get-session', [['Cookie', `a=${'b'.repeat(MAX_COOKIE_BYTES / 2)}`], ['Cookie', `c=${'d'.repeat(MAX_COOKIE_BYTES / 2)}`]])
  t.equal(split.status, 431, 'two Cookie headers count together')
  const bearer = await rawRequest(stack.url, 'GET', '/auth/jwt', [['Authorization', `Bearer ${'x'.repeat(MAX_AUTHORIZATION_BYTES)}`]])
  t.equal(bearer.status, 431, 'an oversized bearer token')
  t.equal(JSON.parse(bearer.body).error, 'header_too_large')
  t.equal(authCoreCalls, 0, 'auth-core was never called')

  const atCookieLimit = await rawRequest(stack.url, 'GET', '/auth/get-session', [['Cookie', `x=${'y'.repeat(MAX_COOKIE_BYTES - 2)}`]])
  t.equal(atCookieLimit.status, 200, 'a Cookie of exactly MAX_COOKIE_BYTES goes through')
  const atTokenLimit = await rawRequest(stack.url, 'GET', '/auth/jwt', [['Authorization', `Bearer ${'x'.repeat(MAX_AUTHORIZATION_BYTES - 7)}`]])
  t.equal(atTokenLimit.status, 401, 'an Authorization of exactly MAX_AUTHORIZATION_BYTES reaches the token check')

  const browser = cookieFetch()
  t.equal((await postJson(browser, `${stack.url}/auth/sign-up/email`, { email: uniqueEmail(), password: 'correct horse battery', name: 'Reader' })).status, 200)
  const before = authCoreCalls
  const session = await browser(`${stack.url}/auth/get-session`)
  t.equal(session.status, 200, 'a normal request still works')
  t.ok((await session.json() as { user?: unknown }).user, 'and is signed in')
  t.equal(authCoreCalls, before + 1, 'the counter sees calls to auth-core')
})

t.test('security headers on every answer: errors, the 404, health, rate-limit refusals and proxied answers', async (t) => {
  const unauthorized = await fetch(`${stack.url}/api/private`, { headers: { origin: TEST_ORIGIN } })
  t.equal(unauthorized.status, 401)
  for (const [label, response] of [['401', unauthorized], ['health', await fetch(`${stack.url}/health`)], ['404', await fetch(`${stack.url}/nope`)]] as const) {
    assertSecurityHeaders(t, (name) => response.headers.get(name), label)
  }

  // A gateway of its own with a sign-in budget of one, so the shared stack's budget stays whole.
  const limitedGateway = await gatewayOn(t, stack, { AUTH_RATE_LIMIT_MAX: '1' })
  const signIn = () => limitedGateway.inject({ method: 'POST', url: '/auth/sign-in/email', headers: { origin: TEST_ORIGIN }, payload: { email: uniqueEmail(), password: PASSWORD } })
  await signIn()
  const limited = await signIn()
  t.equal(limited.statusCode, 429)
  assertSecurityHeaders(t, (name) => { const value = limited.headers[name]; return value === undefined ? null : String(value) }, '429')

  const proxied = await fetch(`${stack.url}/auth/get-session`)
  t.equal(proxied.headers.get('x-content-type-options'), 'nosniff', 'proxied answers too')
  t.equal(proxied.headers.get('cache-control'), 'no-store')
})

t.test('HSTS when PUBLIC_URL is https', async (t) => {
  const gateway = await gatewayOn(t, stack, { PUBLIC_URL: 'https://docs.example.com' })
  const response = await gateway.inject({ method: 'GET', url: '/health' })
  t.equal(response.statusCode, 200)
  t.match(response.headers['strict-transport-security'] ?? '', /max-age=31536000/)
})

// Raw sockets: fetch would refuse to send two Host headers or a TRACE.
t.test('request hygiene: two Host headers, TRACE, non-JSON bodies', async (t) => {
  const before = rag.requests.length
  const twoHosts = await rawRequest(stack.url, 'GET', '/health', [['Host', 'a.example'], ['Host', 'b.example']])
  t.equal(twoHosts.status, 400)
  const trace = await rawRequest(stack.url, 'TRACE', '/health')
  t.ok([404, 405].includes(trace.status), `TRACE refused (${trace.status})`)
  const plain = await rawRequest(stack.url, 'POST', '/api/v1/query', [['Content-Type', 'text/plain']], 'q=x')
  t.equal(plain.status, 415)
  const form = await rawRequest(stack.url, 'POST', '/api/v1/query', [['Content-Type', 'application/x-www-form-urlencoded']], 'q=x')
  t.equal(form.status, 415)
  const malformed = await rawRequest(stack.url, 'POST', '/api/v1/query', [['Content-Type', 'application/json']], '{"q":')
  t.equal(malformed.status, 400)
  t.equal(JSON.parse(malformed.body).error, 'invalid_json')
  t.same(rag.requests.slice(before), [], 'none of them reached the RAG upstream')
})
