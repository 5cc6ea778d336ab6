import t from 'tap'
import { gatewayOn, TEST_ORIGIN, uniqueEmail } from '../../helper.ts'
import { rawRequest } from '../../raw-http.ts'
import { PASSWORD } from '../../readers.ts'
import { stackWithUpstreams } from '../../upstream.ts'

// One stack for the file (an app upstream, so `/api/private` is a protected route).
const { stack } = await stackWithUpstreams(t)

t.test('CORS: an allowed origin gets a credentialed preflight grant, another origin gets none', async (t) => {
  const preflight = (origin: string) => fetch(`${stack.url}/auth/sign-in/email`, {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' }
  })
  const allowed = await preflight(TEST_ORIGIN)
  t.equal(allowed.status, 204)
  t.equal(allowed.headers.get('access-control-allow-origin'), TEST_ORIGIN)
  t.equal(allowed.headers.get('access-control-allow-credentials'), 'true')
  t.match(allowed.headers.get('access-control-allow-methods') ?? '', /POST/)

  const evil = await preflight('http://evil.example')
  t.equal(evil.headers.get('access-control-allow-origin'), null, 'no grant for a foreign origin')
  t.equal(evil.headers.get('access-control-allow-credentials'), null)

  const simple = await fetch(`${stack.url}/auth/get-session`, { headers: { origin: 'http://evil.example' } })
  t.equal(simple.headers.get('access-control-allow-origin'), null)
  const prefix = await fetch(`${stack.url}/auth/get-session`, { headers: { origin: `${TEST_ORIGIN}.evil.example` } })
  t.equal(prefix.headers.get('access-control-allow-origin'), null, 'matching is exact, not a prefix')
})

t.test('errors to an allowed origin carry CORS headers, so the page can read them', async (t) => {
  const unauthorized = await fetch(`${stack.url}/api/private`, { headers: { origin: TEST_ORIGIN } })
  t.equal(unauthorized.status, 401)
  t.equal(unauthorized.headers.get('access-control-allow-origin'), TEST_ORIGIN)
  t.equal(unauthorized.headers.get('access-control-allow-credentials'), 'true')
  t.same(await unauthorized.json(), { error: 'unauthorized', message: 'Sign in to use this endpoint', requestId: unauthorized.headers.get('x-request-id') })

  // Raw: fetch would resolve the `%2e%2e` before sending.
  const badPath = await rawRequest(stack.url, 'GET', '/api/%2e%2e/x', [['Origin', TEST_ORIGIN]])
  t.equal(badPath.status, 400)
  t.equal(badPath.headers['access-control-allow-origin'], TEST_ORIGIN)
  t.equal(JSON.parse(badPath.body).error, 'bad_path')

  // A gateway of its own with a sign-in budget of one, so the shared stack's budget stays whole.
  const limitedGateway = await gatewayOn(t, stack, { AUTH_RATE_LIMIT_MAX: '1' })
  const signIn = () => limitedGateway.inject({ method: 'POST', url: '/auth/sign-in/email', headers: { origin: TEST_ORIGIN }, payload: { email: uniqueEmail(), password: PASSWORD } })
  t.not((await signIn()).statusCode, 429, 'the first sign-in is within the budget')
  const limited = await signIn()
  t.equal(limited.statusCode, 429)
  t.equal(limited.headers['access-control-allow-origin'], TEST_ORIGIN)
  t.ok(Number(limited.headers['retry-after']) > 0)
})
