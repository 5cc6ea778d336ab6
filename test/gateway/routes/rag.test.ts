import t from 'tap'
import { gatewayOn, verifyIdentityToken } from '../../helper.ts'
import { rawRequest } from '../../raw-http.ts'
import { signUp } from '../../readers.ts'
import { closedPortUrl, recordingUpstream, stackWithUpstreams } from '../../upstream.ts'

// One stack for the file; `tier` is a custom user field, to see it travel in the identity token.
const { stack, rag } = await stackWithUpstreams(t, { AUTH_USER_FIELDS: 'tier:string' })

// Raw sockets: fetch would normalise the targets before the gateway saw them.
t.test('normalised variants of a public route reach it with the normalised path only', async (t) => {
  const before = rag.requests.length
  const variants = ['/api/./v1/query', '/api//v1/query', '/%61pi/v1/%71uery', '/api/v1/select/../query', 'http://evil.example/api/v1/query', '/api/v1/query#x']
  for (const target of variants) {
    const response = await rawRequest(stack.url, 'POST', target, [['Content-Type', 'application/json']], '{"q":"x"}')
    t.equal(response.status, 200, `${target} → 200`)
  }
  t.same(rag.requests.slice(before).map((r) => r.url), variants.map(() => '/api/v1/query'), 'the upstream received exactly the checked path')
})

t.test('identity: anonymous calls carry none; spoofed headers never arrive; a signed-in call carries a verifiable token', async (t) => {
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
  const before = rag.requests.length
  const anonymous = await rawRequest(stack.url, 'POST', '/api/v1/query', spoofed, '{"q":"anon"}')
  t.equal(anonymous.status, 200, 'an invalid bearer on a public route continues as anonymous')
  t.equal(rag.requests.length, before + 1, 'the upstream got the call')
  const seenAnon = rag.requests.at(-1)
  const names = (seenAnon?.rawHeaders ?? []).filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase().replace(/_/g, '-'))
  for (const forbidden of ['x-user-id', 'x-user-email', 'x-auth-user', 'x-forwarded-user', 'x-remote-user', 'x-original-url', 'x-rewrite-url', 'x-middleware-subrequest', 'authorization', 'cookie', 'x-http-method-override']) {
    t.notOk(names.includes(forbidden), `anonymous: no ${forbidden}`)
  }
  t.equal(seenAnon?.headers['x-forwarded-for'], '127.0.0.1', 'the gateway sets the client address')

  const { email, cookie } = await signUp(stack, { name: 'Signed In', tier: 'gold' })
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

t.test('RAG upstream: not configured → 503; down → 503 at once; slow → 504', async (t) => {
  const query = { method: 'POST', url: '/api/v1/query', payload: { q: 'x' } } as const

  const unconfigured = await gatewayOn(t, stack)
  const response = await unconfigured.inject(query)
  t.equal(response.statusCode, 503)
  t.equal(response.json<{ error: string }>().error, 'rag_upstream_not_configured')

  const down = await gatewayOn(t, stack, { RAG_UPSTREAM_URL: await closedPortUrl() })
  const refused = await down.inject(query)
  t.equal(refused.statusCode, 503, 'a refused connection')
  // Not a wait for the 30 s deadline: that would answer 504 upstream_timeout.
  t.equal(refused.json<{ error: string }>().error, 'upstream_unavailable', 'is unavailable at once, not a timeout')

  // An upstream that takes the call and never answers: the deadline is the behaviour under test.
  const hung = await recordingUpstream(t)
  hung.hold()
  const slow = await gatewayOn(t, stack, { RAG_UPSTREAM_URL: hung.url }, { upstreamTimeoutMs: 300 })
  const timedOut = await slow.inject(query)
  t.equal(timedOut.statusCode, 504)
  t.equal(timedOut.json<{ error: string }>().error, 'upstream_timeout')
  t.equal(hung.requests.length, 1, 'the upstream did get the call')
})
