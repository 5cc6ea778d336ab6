import t from 'tap'
import fc from 'fast-check'
import { isEndpointAccessible } from '../../../gateway/access/is-endpoint-accessible.ts'
import { DEFAULT_RULES } from '../../../gateway/access/rules.ts'
import { buildGateway } from '../../../gateway/app.ts'
import { normalisePath } from '../../../gateway/stages/normalise-path.ts'
import { gatewayOn } from '../../helper.ts'
import { rawRequest } from '../../raw-http.ts'
import { PASSWORD, signUp } from '../../readers.ts'
import { closedPortUrl, stackWithUpstreams } from '../../upstream.ts'

// One stack for the file: a recording RAG and app upstream behind it.
const { stack, rag, app } = await stackWithUpstreams(t)
const RAG_PATHS = new Set(['/api/v1/query', '/api/v1/select'])

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

t.test('the gateway refuses to start when a route has no access rule', async (t) => {
  const gateway = await buildGateway(stack.config, { pool: stack.pool })
  gateway.get('/metrics', async () => ({ up: 1 }))
  await t.rejects(async () => { await gateway.ready() }, /access policy does not cover the gateway: route GET \/metrics matches no access rule/)
  await gateway.close()
})

// Raw sockets: fetch and inject would normalise the targets before the gateway saw them.
t.test('no attack request reaches a protected upstream route', async (t) => {
  const appBefore = app.requests.length
  const ragBefore = rag.requests.length
  for (const [method, target] of ATTACKS) {
    const response = await rawRequest(stack.url, method, target, [['X-HTTP-Method-Override', 'GET']], method === 'POST' ? '{}' : '')
    t.ok([400, 401, 403, 404, 405].includes(response.status), `${method} ${target} refused (${response.status})`)
    if (response.status !== 0 && method !== 'HEAD') {
      const body = JSON.parse(response.body) as { error: string, message: string }
      t.type(body.error, 'string', `${method} ${target}: error body`)
    }
  }
  t.same(app.requests.slice(appBefore), [], 'the app upstream saw nothing')
  t.same(rag.requests.slice(ragBefore).filter((r) => !RAG_PATHS.has(r.url)), [], 'the RAG upstream saw only its own paths')
})

t.test('property: the policy decision and what the upstream receives always agree', async (t) => {
  const segment = fc.constantFrom('api', 'v1', 'query', 'select', 'profile', 'auth', 'private', '..', '.', '', '%2e', '%2e%2e', '%2f', '%2F', '%252f', ';', 'x;y', '%61pi', '%00', '\\', 'Query', 'API', '%EF%BC%8F', '#', '?a=1')
  const method = fc.constantFrom('GET', 'POST', 'DELETE', 'HEAD')
  const spoof = fc.subarray([['X-User-Id', 'admin'], ['X_Auth_User', 'admin'], ['Connection', 'x-user-id']] as Array<[string, string]>)
  const anyTarget = fc.array(segment, { minLength: 1, maxLength: 6 }).map((segments) => '/' + segments.join('/'))
  // Spellings around the public RAG routes: random segments alone almost never reach an upstream,
  // and the property would then never look at what an upstream receives.
  const nearPublic = fc.tuple(
    fc.constantFrom('api', '%61pi'),
    fc.array(fc.constantFrom('.', '', '%2e', '..', 'profile/..'), { maxLength: 3 }),
    fc.constantFrom('v1'),
    fc.constantFrom('query', 'select', '%71uery', 'queryX'),
    fc.constantFrom('', '?a=1', '#x', '/')
  ).map(([api, noise, v1, route, tail]) => '/' + [api, ...noise, v1, route].join('/') + tail)
  const answered = new Map<number, number>()
  let reachedRag = 0
  const request = fc.oneof(fc.tuple(method, anyTarget), fc.tuple(fc.constantFrom('POST', 'POST', 'GET'), nearPublic))
  const result = await fc.check(fc.asyncProperty(request, spoof, async ([verb, target], headers) => {
    const ragBefore = rag.requests.length
    const appBefore = app.requests.length
    const response = await rawRequest(stack.url, verb, target, [['Content-Type', 'application/json'], ...headers], verb === 'POST' ? '{}' : '')
    answered.set(response.status, (answered.get(response.status) ?? 0) + 1)
    const normalised = normalisePath(target)
    if (app.requests.length !== appBefore) throw new Error(`anonymous ${verb} ${target} reached the app upstream`)
    if (rag.requests.length !== ragBefore) {
      reachedRag++
      const received = rag.requests.at(-1)
      if (received === undefined || !normalised.ok) throw new Error(`${target} reached RAG without a canonical form`)
      const path = received.url.split('?')[0]
      if (path !== normalised.path) throw new Error(`policy checked ${normalised.path} but upstream got ${received.url}`)
      if (!isEndpointAccessible(DEFAULT_RULES, { method: verb, path, identity: null }).allowed) throw new Error(`${path} is not public`)
      if (received.headers['x-user-id'] !== undefined || received.headers['x-auth-user'] !== undefined) throw new Error('a spoofed identity arrived')
    }
    if (response.status >= 500 || response.status === 0) throw new Error(`${verb} ${target} answered ${response.status}`)
  }), { numRuns: 200, seed: 42 })
  t.equal(result.failed, false, result.failed ? fc.defaultReportMessage(result) ?? 'the property failed' : 'no counterexample')
  t.equal(result.numRuns, 200, '200 random requests were sent')
  // Without these the property could hold vacuously: every request refused, or none ever forwarded.
  t.ok(reachedRag > 0, `some reached the RAG upstream (${reachedRag})`)
  t.ok([...answered.keys()].some((status) => status >= 400), `some were refused (${JSON.stringify(Object.fromEntries(answered))})`)
})

t.test('auth-core down: RAG still answers anonymously, protected routes 503, /auth/* 503', async (t) => {
  const { cookie } = await signUp(stack)
  // A gateway of its own whose auth-core refuses connections: the stack's auth-core stays up for the other tests.
  const gateway = await gatewayOn(t, stack, { AUTH_CORE_URL: await closedPortUrl(), RAG_UPSTREAM_URL: rag.url, APP_UPSTREAM_URL: app.url })
  const appBefore = app.requests.length
  const ragAnswer = await gateway.inject({ method: 'POST', url: '/api/v1/query', headers: { 'content-type': 'application/json', cookie: `${cookie}x` }, payload: '{"q":"x"}' })
  t.equal(ragAnswer.statusCode, 200, 'the public route keeps working')
  t.equal(rag.requests.at(-1)?.headers['x-user-id'], undefined, 'as anonymous')
  const protectedCall = await gateway.inject({ method: 'GET', url: '/api/private', headers: { cookie: `${cookie}y` } })
  t.equal(protectedCall.statusCode, 503, 'never an open door')
  t.equal(protectedCall.json<{ error: string }>().error, 'auth_core_unavailable')
  const auth = await gateway.inject({ method: 'POST', url: '/auth/sign-in/email', headers: { 'content-type': 'application/json' }, payload: { email: 'a@b.co', password: PASSWORD } })
  t.equal(auth.statusCode, 503)
  // A refused connection is told apart from a deadline: that would be 504 upstream_timeout.
  t.equal(auth.json<{ error: string }>().error, 'auth_core_unavailable', 'refused, not timed out')
  t.equal(app.requests.length, appBefore, 'nothing reached the app upstream')
})
