import t from 'tap'
import fc from 'fast-check'
import { isEndpointAccessible } from '../../../gateway/access/is-endpoint-accessible.ts'
import { normalisePath } from '../../../gateway/stages/normalise-path.ts'
import { DEFAULT_RULES } from '../../../gateway/access/rules.ts'
import { cookieFetch, postJson, startTestStack, TEST_ORIGIN, uniqueEmail, verifyIdentityToken } from '../../helper.ts'
import { rawRequest } from '../../raw-http.ts'
import { recordingUpstream, stackWithUpstreams } from '../../upstream.ts'

const PASSWORD = 'correct horse battery'
const RAG_PATHS = new Set(['/api/v1/query', '/api/v1/select'])

async function signUp (base: string) {
  const browser = cookieFetch()
  const email = uniqueEmail()
  const response = await postJson(browser, `${base}/auth/signup`, { email, password: PASSWORD, name: 'Reader' })
  const { user } = await response.json() as { user: { id: string } }
  const cookie = [...browser.cookies].map(([n, v]) => `${n}=${v}`).join('; ')
  return { browser, email, userId: user.id, cookie }
}

const ATTACKS: Array<[string, string]> = [
  ['GET', '/api/v1/query/../profile'],
  ['POST', '/api/v1/query/../profile'],
  ['GET', '/api/v1/query/%2e%2e/profile'],
  ['GET', '/api/v1/%2e%2e/v1/profile'],
  ['GET', '/api/v1/query%2F..%2Fprofile'],
  ['GET', '/api/v1/query%2f..%2fprofile'],
  ['GET', '/api/v1/%252f'],
  ['GET', '//api/v1/profile'],
  ['GET', '/api/v1/profile/'],
  ['GET', '/API/V1/PROFILE'],
  ['GET', '/api/v1/query;/../profile'],
  ['POST', '/api/v1/query;/../other'],
  ['GET', '/api/v1/query\\..\\profile'],
  ['GET', '/api/v1/profile%00'],
  ['GET', '/api/v1/%EF%BC%8Fprofile'],
  ['GET', 'http://localhost/api/v1/profile'],
  ['POST', 'http://evil.example/api/private'],
  ['HEAD', '/api/private'],
  ['OPTIONS', '/api/private'],
  ['DELETE', '/api/v1/query/../private'],
  ['POST', '/api/v1/queryX'],
  ['POST', '/api/v1/query/x'],
  ['GET', '/api/v1/query#/../../private'],
  ['POST', '/%61pi/private'],
  ['GET', '/api/private?x=/../v1/query'],
  ['TRACE', '/api/private'],
  ['GET', '/auth/../api/private'],
  ['GET', '/auth/%2e%2e/api/private']
]

t.test('no attack request reaches a protected upstream route', async (t) => {
  const { stack, rag, app } = await stackWithUpstreams(t)
  for (const [method, target] of ATTACKS) {
    const response = await rawRequest(stack.url, method, target, [['X-HTTP-Method-Override', 'GET']], method === 'POST' ? '{}' : '')
    t.ok([400, 401, 403, 404, 405].includes(response.status), `${method} ${target} refused (${response.status})`)
    if (response.status !== 0 && method !== 'HEAD') {
      const body = JSON.parse(response.body) as { error: string, message: string }
      t.type(body.error, 'string', `${method} ${target}: error body`)
    }
  }
  t.same(app.requests, [], 'the app upstream saw nothing')
  t.same(rag.requests.filter((r) => !RAG_PATHS.has(r.url)), [], 'the RAG upstream saw only its own paths')
})

t.test('normalised variants of a public route reach it with the normalised path only', async (t) => {
  const { stack, rag } = await stackWithUpstreams(t)
  const variants = ['/api/./v1/query', '/api//v1/query', '/%61pi/v1/%71uery', '/api/v1/select/../query', 'http://evil.example/api/v1/query', '/api/v1/query#x']
  for (const target of variants) {
    const response = await rawRequest(stack.url, 'POST', target, [['Content-Type', 'application/json']], '{"q":"x"}')
    t.equal(response.status, 200, `${target} → 200`)
  }
  t.same(rag.requests.map((r) => r.url), variants.map(() => '/api/v1/query'), 'the upstream received exactly the checked path')
})

t.test('identity: anonymous calls carry none; spoofed headers never arrive; a signed-in call carries a verifiable token', async (t) => {
  const { stack, rag } = await stackWithUpstreams(t, { AUTH_USER_FIELDS: 'tier:string' })
  const spoofed: Array<[string, string]> = [
    ['Content-Type', 'application/json'],
    ['X-User-Id', 'admin'],
    ['X_User_Id', 'admin'],
    ['x-user-email', 'admin@example.com'],
    ['X-Auth-User', 'admin'],
    ['X-Forwarded-User', 'admin'],
    ['X-Remote-User', 'admin'],
    ['X-Original-URL', '/api/private'],
    ['X-Rewrite-URL', '/api/private'],
    ['X-Middleware-Subrequest', 'middleware'],
    ['X-Forwarded-For', '203.0.113.7'],
    ['Authorization', 'Bearer forged.token.value'],
    ['Connection', 'close, X-User-Id, x-forwarded-for']
  ]
  const anonymous = await rawRequest(stack.url, 'POST', '/api/v1/query', spoofed, '{"q":"anon"}')
  t.equal(anonymous.status, 200, 'an invalid bearer on a public route continues as anonymous')
  const seenAnon = rag.requests.at(-1)
  t.ok(seenAnon !== undefined)
  const names = (seenAnon?.rawHeaders ?? []).filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase().replace(/_/g, '-'))
  for (const forbidden of ['x-user-id', 'x-user-email', 'x-auth-user', 'x-forwarded-user', 'x-remote-user', 'x-original-url', 'x-rewrite-url', 'x-middleware-subrequest', 'authorization', 'cookie', 'x-http-method-override']) {
    t.notOk(names.includes(forbidden), `anonymous: no ${forbidden}`)
  }
  t.equal(seenAnon?.headers['x-forwarded-for'], '127.0.0.1', 'the gateway sets the client address')

  const email = uniqueEmail()
  const browser = cookieFetch()
  await postJson(browser, `${stack.url}/auth/signup`, { email, password: PASSWORD, name: 'Signed In', tier: 'gold' })
  const cookie = [...browser.cookies].map(([n, v]) => `${n}=${v}`).join('; ')
  const signedIn = await rawRequest(stack.url, 'POST', '/api/v1/query', [...spoofed.filter(([n]) => n !== 'Authorization'), ['Cookie', cookie]], '{"q":"signed"}')
  t.equal(signedIn.status, 200)
  const seen = rag.requests.at(-1)
  const userIds = (seen?.rawHeaders ?? []).flatMap((v, i, all) => i % 2 === 0 && v.toLowerCase().replace(/_/g, '-') === 'x-user-id' ? [all[i + 1]] : [])
  const { rows } = await stack.pool.query<{ id: string }>('SELECT id FROM "user" WHERE email = $1', [email])
  t.same(userIds, [rows[0].id], 'exactly one X-User-Id, the real one, despite Connection: X-User-Id')
  t.equal(seen?.headers.cookie, undefined, 'the session cookie stays at the gateway')
  const token = /^Bearer (.+)$/.exec(String(seen?.headers.authorization))?.[1] ?? ''
  const { payload, protectedHeader } = await verifyIdentityToken(stack.url, token, 'rag')
  t.equal(protectedHeader.alg, 'EdDSA')
  t.equal(payload.aud, 'rag', 'bound to the RAG upstream')
  t.equal(payload.sub, rows[0].id)
  t.equal(payload.email, email)
  t.equal(payload.name, 'Signed In')
  t.equal(payload.tier, 'gold', 'custom fields travel')
  t.ok((payload.exp ?? 0) - (payload.iat ?? 0) <= 300, '5-minute expiry')
})

t.test('sign-out through the gateway makes the next protected call 401 at once, cache or not', async (t) => {
  const { stack, app } = await stackWithUpstreams(t, { SESSION_CACHE_TTL: '1 hour' })
  const { browser } = await signUp(stack.url)
  const before = await browser(`${stack.url}/api/private`)
  t.equal(before.status, 200, 'signed in: the app upstream answers')
  t.equal(app.requests.length, 1)
  const out = await postJson(browser, `${stack.url}/auth/sign-out`, {})
  t.equal(out.status, 200)
  // The browser dropped its cookie; a stolen copy of it must not work either.
  const { browser: other, cookie } = await signUp(stack.url)
  t.equal((await other(`${stack.url}/api/private`)).status, 200)
  t.equal((await postJson(other, `${stack.url}/auth/signout`, {})).status, 200)
  const replay = await fetch(`${stack.url}/api/private`, { headers: { cookie } })
  t.equal(replay.status, 401, 'the signed-out session is refused immediately')
  t.equal(app.requests.length, 2)
})

t.test('errors to an allowed origin carry CORS headers; security headers everywhere', async (t) => {
  const { stack } = await stackWithUpstreams(t, { AUTH_RATE_LIMIT_MAX: '1' })
  const unauthorized = await fetch(`${stack.url}/api/private`, { headers: { origin: TEST_ORIGIN } })
  t.equal(unauthorized.status, 401)
  t.equal(unauthorized.headers.get('access-control-allow-origin'), TEST_ORIGIN)
  t.equal(unauthorized.headers.get('access-control-allow-credentials'), 'true')
  t.same(await unauthorized.json(), { error: 'unauthorized', message: 'Sign in to use this endpoint' })

  const badPath = await rawRequest(stack.url, 'GET', '/api/%2e%2e/x', [['Origin', TEST_ORIGIN]])
  t.equal(badPath.status, 400)
  t.equal(badPath.headers['access-control-allow-origin'], TEST_ORIGIN)
  t.equal(JSON.parse(badPath.body).error, 'bad_path')

  const signIn = () => postJson(fetch, `${stack.url}/auth/sign-in/email`, { email: uniqueEmail(), password: PASSWORD }, { origin: TEST_ORIGIN })
  await signIn()
  const limited = await signIn()
  t.equal(limited.status, 429)
  t.equal(limited.headers.get('access-control-allow-origin'), TEST_ORIGIN)
  t.ok(Number(limited.headers.get('retry-after')) > 0)

  for (const response of [unauthorized, limited, await fetch(`${stack.url}/health`), await fetch(`${stack.url}/nope`)]) {
    t.equal(response.headers.get('x-content-type-options'), 'nosniff')
    t.equal(response.headers.get('x-frame-options'), 'DENY')
    t.match(response.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/)
    t.equal(response.headers.get('referrer-policy'), 'no-referrer')
    t.equal(response.headers.get('strict-transport-security'), null, 'no HSTS on an http PUBLIC_URL')
  }
  const proxied = await fetch(`${stack.url}/auth/get-session`)
  t.equal(proxied.headers.get('x-content-type-options'), 'nosniff', 'proxied answers too')
  t.equal(proxied.headers.get('cache-control'), 'no-store')
})

t.test('HSTS when PUBLIC_URL is https', async (t) => {
  const stack = await startTestStack(t, { PUBLIC_URL: 'https://docs.example.com' })
  const response = await fetch(`${stack.url}/health`)
  t.match(response.headers.get('strict-transport-security') ?? '', /max-age=31536000/)
})

t.test('request hygiene: two Host headers, TRACE, non-JSON bodies', async (t) => {
  const { stack, rag } = await stackWithUpstreams(t)
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
  t.same(rag.requests, [], 'none of them reached the RAG upstream')
})

t.test('RAG upstream: not configured → 503; down → 503 quickly; slow → 504', async (t) => {
  const unconfigured = await startTestStack(t)
  const response = await postJson(fetch, `${unconfigured.url}/api/v1/query`, { q: 'x' })
  t.equal(response.status, 503)
  t.equal((await response.json() as { error: string }).error, 'rag_upstream_not_configured')
  t.equal((await fetch(`${unconfigured.url}/api/anything`)).status, 404, 'no app upstream: other /api/* are 404')

  const down = await startTestStack(t, { RAG_UPSTREAM_URL: 'http://127.0.0.1:9' })
  const started = Date.now()
  const refused = await postJson(fetch, `${down.url}/api/v1/query`, { q: 'x' })
  t.ok([502, 503].includes(refused.status), `down upstream → ${refused.status}`)
  t.ok(Date.now() - started < 2000, 'quickly')

  const rag = await recordingUpstream(t)
  rag.delayMs = 3000
  const slowConfig = await startTestStack(t, { RAG_UPSTREAM_URL: rag.url })
  await slowConfig.gateway.close()
  const { buildGateway } = await import('../../../gateway/app.ts')
  const gateway = await buildGateway(slowConfig.config, { pool: slowConfig.pool, upstreamTimeoutMs: 300 })
  t.teardown(() => gateway.close())
  const slow = await gateway.inject({ method: 'POST', url: '/api/v1/query', payload: { q: 'x' } })
  t.equal(slow.statusCode, 504)
  t.equal(slow.json().error, 'upstream_timeout')
})

t.test('auth-core down: RAG still answers anonymously, protected routes 503, /auth/* 503 within 2 s', async (t) => {
  const { stack, rag } = await stackWithUpstreams(t)
  const { cookie } = await signUp(stack.url)
  await stack.authCore.close()
  const ragAnswer = await fetch(`${stack.url}/api/v1/query`, { method: 'POST', headers: { 'content-type': 'application/json', cookie: `${cookie}x` }, body: '{"q":"x"}' })
  t.equal(ragAnswer.status, 200, 'the public route keeps working')
  t.equal(rag.requests.at(-1)?.headers['x-user-id'], undefined, 'as anonymous')
  const started = Date.now()
  const protectedCall = await fetch(`${stack.url}/api/private`, { headers: { cookie: `${cookie}y` } })
  t.equal(protectedCall.status, 503, 'never an open door')
  const auth = await postJson(fetch, `${stack.url}/auth/sign-in/email`, { email: 'a@b.co', password: PASSWORD })
  t.equal(auth.status, 503)
  t.ok(Date.now() - started < 2000, 'within 2 s')
})

t.test('rate limits: the sixth sign-in gets 429; normalised variants and X-Forwarded-For do not help', async (t) => {
  const { stack } = await stackWithUpstreams(t, { AUTH_RATE_LIMIT_MAX: '5' })
  const attempt = (target: string, headers: Array<[string, string]> = []) =>
    rawRequest(stack.url, 'POST', target, [['Content-Type', 'application/json'], ['Origin', TEST_ORIGIN], ...headers], JSON.stringify({ email: 'nobody@example.com', password: 'wrong password' }))
  const variants = ['/auth/sign-in/email', '/auth/./sign-in/email', '/auth/sign-in/%2e/email', '/%61uth/sign-in/email', '/auth/signin#fragment']
  for (const target of variants) t.equal((await attempt(target)).status, 401, `${target} reaches sign-in and counts`)
  const sixth = await attempt('/auth/sign-in/email', [['X-Forwarded-For', '198.51.100.1']])
  t.equal(sixth.status, 429)
  t.ok(Number(sixth.headers['retry-after']) > 0, 'Retry-After')
  t.equal(JSON.parse(sixth.body).error, 'rate_limited')
  t.equal((await attempt('/auth/sign-up/email', [['X-Forwarded-For', '198.51.100.2']])).status, 429, 'sign-up is in the same group')
  t.equal((await fetch(`${stack.url}/auth/get-session`)).status, 200, 'other auth routes are not in the group')
})

t.test('rate limits with TRUST_PROXY: the forwarded client address is the key', async (t) => {
  const stack = await startTestStack(t, { AUTH_RATE_LIMIT_MAX: '1', TRUST_PROXY: '127.0.0.1' })
  const attempt = (ip: string) => postJson(fetch, `${stack.url}/auth/sign-in/email`, { email: 'nobody@example.com', password: 'wrong password' }, { 'x-forwarded-for': ip, origin: TEST_ORIGIN })
  t.equal((await attempt('198.51.100.1')).status, 401)
  t.equal((await attempt('198.51.100.1')).status, 429)
  t.equal((await attempt('198.51.100.2')).status, 401, 'another client behind the load balancer has its own budget')
})

t.test('RAG budgets: per address when anonymous, per user when signed in', async (t) => {
  const { stack } = await stackWithUpstreams(t, { RAG_RATE_LIMIT_ANON: '2', RAG_RATE_LIMIT_USER: '4' })
  const query = (headers: Record<string, string> = {}) => postJson(fetch, `${stack.url}/api/v1/query`, { q: 'x' }, headers)
  t.equal((await query()).status, 200)
  t.equal((await query()).status, 200)
  t.equal((await query()).status, 429, 'the third anonymous call from one address')
  const { cookie } = await signUp(stack.url)
  const statuses = []
  for (let i = 0; i < 5; i++) statuses.push((await query({ cookie })).status)
  t.same(statuses, [200, 200, 200, 200, 429], 'a signed-in reader has their own, larger budget')
})

t.test('property: the policy decision and what the upstream receives always agree', async (t) => {
  const { stack, rag, app } = await stackWithUpstreams(t)
  const segment = fc.constantFrom('api', 'v1', 'query', 'select', 'profile', 'auth', 'private', '..', '.', '', '%2e', '%2e%2e', '%2f', '%2F', '%252f', ';', 'x;y', '%61pi', '%00', '\\', 'Query', 'API', '%EF%BC%8F', '#', '?a=1')
  const method = fc.constantFrom('GET', 'POST', 'DELETE', 'HEAD')
  const spoof = fc.subarray([['X-User-Id', 'admin'], ['X_Auth_User', 'admin'], ['Connection', 'x-user-id']] as Array<[string, string]>)
  await fc.assert(fc.asyncProperty(method, fc.array(segment, { minLength: 1, maxLength: 6 }), spoof, async (verb, segments, headers) => {
    const target = '/' + segments.join('/')
    const ragBefore = rag.requests.length
    const appBefore = app.requests.length
    const response = await rawRequest(stack.url, verb, target, [['Content-Type', 'application/json'], ...headers], verb === 'POST' ? '{}' : '')
    const normalised = normalisePath(target)
    if (app.requests.length !== appBefore) throw new Error(`anonymous ${verb} ${target} reached the app upstream`)
    if (rag.requests.length !== ragBefore) {
      const received = rag.requests.at(-1)
      if (received === undefined || !normalised.ok) throw new Error(`${target} reached RAG without a canonical form`)
      const path = received.url.split('?')[0]
      if (path !== normalised.path) throw new Error(`policy checked ${normalised.path} but upstream got ${received.url}`)
      if (!isEndpointAccessible(DEFAULT_RULES, { method: verb, path, identity: null }).allowed) throw new Error(`${path} is not public`)
      if (received.headers['x-user-id'] !== undefined || received.headers['x-auth-user'] !== undefined) throw new Error('a spoofed identity arrived')
    }
    if (response.status >= 500) throw new Error(`${verb} ${target} answered ${response.status}`)
  }), { numRuns: 200, seed: 42 })
  t.pass('200 random requests agreed')
})

t.test('cookie-authenticated writes to the app upstream need an allowed origin; bearer writes do not', async (t) => {
  const { stack, app } = await stackWithUpstreams(t)
  const { cookie } = await signUp(stack.url)
  const post = (headers: Record<string, string>) => fetch(`${stack.url}/api/notes`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: '{"note":"x"}' })
  const foreign = await post({ cookie, origin: 'http://evil.example' })
  t.equal(foreign.status, 403)
  t.equal((await foreign.json() as { error: string }).error, 'csrf_rejected')
  t.equal((await post({ cookie })).status, 403, 'neither Origin nor Referer')
  t.equal(app.requests.length, 0, 'nothing reached the app upstream')
  t.equal((await post({ cookie, origin: TEST_ORIGIN })).status, 200)
  t.equal((await post({ cookie, referer: `${TEST_ORIGIN}/docs/intro` })).status, 200, 'an allowed Referer without Origin')
  t.equal((await fetch(`${stack.url}/api/notes`, { headers: { cookie, origin: 'http://evil.example' } })).status, 200, 'reads are not checked')
  const { token } = await (await fetch(`${stack.url}/auth/jwt`, { headers: { cookie } })).json() as { token: string }
  t.equal((await post({ authorization: `Bearer ${token}` })).status, 200, 'bearer calls carry no ambient credential')
  t.equal(app.requests.length, 4)
})

t.test('the gateway refuses to start when a route has no access rule', async (t) => {
  const stack = await startTestStack(t)
  const { buildGateway } = await import('../../../gateway/app.ts')
  const gateway = await buildGateway(stack.config, { pool: stack.pool })
  gateway.get('/metrics', async () => ({ up: 1 }))
  await t.rejects(async () => { await gateway.ready() }, /access policy does not cover the gateway: route GET \/metrics matches no access rule/)
  await gateway.close()
})

t.test('several session cookies in one header: the gateway decides as better-auth does', async (t) => {
  const { stack, app } = await stackWithUpstreams(t)
  const { cookie } = await signUp(stack.url)
  const value = cookie.split('=').slice(1).join('=')
  const forged = 'better-auth.session_token=forged.token'
  for (const header of [`${forged}; ${cookie}`, `${cookie}; ${forged}`, `better-auth.session_token=${value}x; ${cookie}`]) {
    const session = await (await fetch(`${stack.url}/auth/get-session`, { headers: { cookie: header } })).json() as { user?: unknown } | null
    const protectedCall = await fetch(`${stack.url}/api/private`, { headers: { cookie: header } })
    t.equal(protectedCall.status === 200, session !== null, `${header.slice(0, 40)}…: gateway ${protectedCall.status}, better-auth ${session === null ? 'anonymous' : 'signed in'}`)
  }
  t.ok(app.requests.length <= 3)
})
