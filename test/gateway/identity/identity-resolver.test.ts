import t from 'tap'
import type { Test } from 'tap'
import type { IncomingMessage } from 'node:http'
import { sessionCookies } from '../../../gateway/identity/identity-resolver.ts'
import { revokeTokensNow } from '../../../shared/token-revocation.ts'
import { cookieFetch, gatewayOn, postJson, TEST_ORIGIN } from '../../helper.ts'
import { bearer, issueToken, PASSWORD, signUp } from '../../readers.ts'
import { recordingUpstream, stackWithUpstreams } from '../../upstream.ts'

// One stack for the file. Sessions are cached for an hour: whatever is looked up again was evicted.
const { stack, app } = await stackWithUpstreams(t, { SESSION_CACHE_TTL: '1 hour' })

/** Counts the session look-ups the stack's auth-core receives until the test ends. */
function sessionLookups (t: Test): { count: number } {
  const counter = { count: 0 }
  const count = (request: IncomingMessage): void => {
    if (request.url?.startsWith('/api/validate-session') === true) counter.count++
  }
  stack.authCore.server.on('request', count)
  t.teardown(() => { stack.authCore.server.off('request', count) })
  return counter
}

/** A protected call (the app upstream needs a session) through the stack's gateway; its status. */
async function protectedStatus (headers: Record<string, string>): Promise<number> {
  return (await stack.gateway.inject({ method: 'GET', url: '/api/private', headers })).statusCode
}

/** A second session of the reader: a sign-in through the gateway, its cookies. */
async function signInAgain (email: string): Promise<string> {
  const browser = cookieFetch()
  const response = await postJson(browser, `${stack.url}/auth/sign-in/email`, { email, password: PASSWORD })
  if (response.status !== 200) throw new Error(`sign-in answered ${response.status}`)
  return [...browser.cookies].map(([name, value]) => `${name}=${value}`).join('; ')
}

t.test('sessionCookies: the better-auth session cookies of a Cookie header, in order, nothing else', async (t) => {
  const cases: Array<[string | undefined, string | null]> = [
    [undefined, null],
    ['', null],
    ['theme=dark', null],
    ['better-auth.session_token=abc.sig', 'better-auth.session_token=abc.sig'],
    ['theme=dark; better-auth.session_token=abc.sig; lang=en', 'better-auth.session_token=abc.sig'],
    ['  better-auth.session_token =  abc.sig  ', 'better-auth.session_token=abc.sig'],
    ['__Secure-better-auth.session_token=s', '__Secure-better-auth.session_token=s'],
    ['__Host-better-auth.session_token=h', '__Host-better-auth.session_token=h'],
    ['better-auth.session_token=a=b==', 'better-auth.session_token=a=b=='],
    ['better-auth.session_token=one; better-auth.session_token=two', 'better-auth.session_token=one; better-auth.session_token=two'],
    ['better-auth.session_data=payload', null],
    ['better-auth.session_token_x=1; x-better-auth.session_token=2', null],
    ['__Other-better-auth.session_token=1', null],
    ['novalue; better-auth.session_token=v', 'better-auth.session_token=v']
  ]
  for (const [header, expected] of cases) t.equal(sessionCookies(header), expected, JSON.stringify(header))
})

t.test('concurrent requests with one uncached cookie share one get-session call', async (t) => {
  const reader = await signUp(stack)
  const lookups = sessionLookups(t)
  // `inject` dispatches each request at once, so all ten are waiting on the look-up before auth-core can answer it.
  const statuses = await Promise.all(Array.from({ length: 10 }, () => protectedStatus({ cookie: reader.cookie })))
  t.same(statuses, Array(10).fill(200), 'all ten are let through')
  t.equal(lookups.count, 1, 'one look-up at auth-core for ten requests')
  t.equal(await protectedStatus({ cookie: reader.cookie }), 200)
  t.equal(lookups.count, 1, 'and the next request is answered from the cache')

  const others = [await signUp(stack), await signUp(stack), await signUp(stack)]
  const mixed = await Promise.all(others.flatMap((other) => [other, other].map(async ({ cookie }) => protectedStatus({ cookie }))))
  t.same(mixed, Array(6).fill(200))
  t.equal(lookups.count, 4, 'three other cookies, two requests each: one look-up per cookie')
})

t.test('a failed look-up is shared by the requests waiting on it, and not remembered', async (t) => {
  const failing = await recordingUpstream(t, () => ({ status: 500, body: { error: 'down' } }))
  failing.hold()
  const gateway = await gatewayOn(t, stack, { AUTH_CORE_URL: failing.url, APP_UPSTREAM_URL: app.url })
  const cookie = 'better-auth.session_token=some.session'
  const pending = Promise.all(Array.from({ length: 5 }, async () => gateway.inject({ method: 'GET', url: '/api/private', headers: { cookie } })))
  const lookup = await failing.nextRequest()
  t.equal(lookup.url, '/api/validate-session', 'the gateway asks auth-core for the session')
  failing.release()
  const answers = await pending
  t.same(answers.map((answer) => answer.statusCode), Array(5).fill(503), 'every waiting request fails closed')
  t.same(answers.map((answer) => answer.json<{ error: string }>().error), Array(5).fill('auth_core_unavailable'))
  t.equal(failing.requests.length, 1, 'five requests, one look-up')
  t.equal((await gateway.inject({ method: 'GET', url: '/api/private', headers: { cookie } })).statusCode, 503)
  t.equal(failing.requests.length, 2, 'the failure was not cached: the next request asks again')
})

t.test('evict forgets one cookie session; evictUser every session of the user, and no one else\'s', async (t) => {
  const reader = await signUp(stack)
  const secondSession = await signInAgain(reader.email)
  const other = await signUp(stack)
  const lookups = sessionLookups(t)
  const cookies = [reader.cookie, secondSession, other.cookie]
  for (const cookie of cookies) t.equal(await protectedStatus({ cookie }), 200)
  t.equal(lookups.count, 3, 'three sessions, one look-up each')
  for (const cookie of cookies) t.equal(await protectedStatus({ cookie }), 200)
  t.equal(lookups.count, 3, 'then cached')

  const sizes = stack.gateway.identities.cacheSizes().sessions
  stack.gateway.identities.evict(undefined)
  stack.gateway.identities.evict('theme=dark')
  t.equal(stack.gateway.identities.cacheSizes().sessions, sizes, 'a header without a session cookie evicts nothing')

  // Other cookies around it do not matter: the session cookies are the key.
  stack.gateway.identities.evict(`theme=dark; ${reader.cookie}`)
  t.equal(stack.gateway.identities.cacheSizes().sessions, sizes - 1, 'one entry gone')
  t.equal(await protectedStatus({ cookie: reader.cookie }), 200)
  t.equal(lookups.count, 4, 'the evicted session is looked up again')
  t.equal(await protectedStatus({ cookie: secondSession }), 200)
  t.equal(await protectedStatus({ cookie: other.cookie }), 200)
  t.equal(lookups.count, 4, 'the others stay cached')

  stack.gateway.identities.evictUser(reader.userId)
  t.equal(stack.gateway.identities.cacheSizes().sessions, sizes - 2, 'both of the reader\'s sessions gone')
  t.equal(await protectedStatus({ cookie: reader.cookie }), 200)
  t.equal(await protectedStatus({ cookie: secondSession }), 200)
  t.equal(lookups.count, 6, 'both of the reader\'s sessions are looked up again')
  t.equal(await protectedStatus({ cookie: other.cookie }), 200)
  t.equal(lookups.count, 6, 'the other reader\'s stays cached')
})

t.test('evictUser also forgets the cached token generation', async (t) => {
  const reader = await signUp(stack)
  const { token } = await issueToken(stack, reader)
  t.equal(await protectedStatus(bearer(token)), 200, 'the bearer token passes; its user\'s generation is now cached')
  // A revocation the gateway was not told about (auth-core announces its own: see the auth proxy).
  await revokeTokensNow(stack.pool, reader.userId)
  t.equal(await protectedStatus(bearer(token)), 200, 'the cached generation still lets it through')
  stack.gateway.identities.evictUser(reader.userId)
  const refused = await stack.gateway.inject({ method: 'GET', url: '/api/private', headers: bearer(token) })
  t.equal(refused.statusCode, 401, 'after evictUser the generation is read again: refused')
  t.equal(refused.json<{ error: string }>().error, 'invalid_token')
})

t.test('revoking one session through the gateway evicts the user\'s cached sessions at once', async (t) => {
  const reader = await signUp(stack)
  const secondSession = await signInAgain(reader.email)
  for (const cookie of [reader.cookie, secondSession]) t.equal(await protectedStatus({ cookie }), 200, 'cached')
  const listed = await fetch(`${stack.url}/auth/list-sessions`, { headers: { cookie: secondSession } })
  t.equal(listed.status, 200)
  const sessions = await listed.json() as Array<{ token: string }>
  t.equal(sessions.length, 2, 'the reader has two sessions')
  const firstToken = decodeURIComponent(reader.cookie.match(/better-auth\.session_token=([^.;]+)/)?.[1] ?? '')
  t.ok(sessions.some((session) => session.token === firstToken), 'one of them is the first session')
  const revoked = await postJson(fetch, `${stack.url}/auth/revoke-session`, { token: firstToken }, { cookie: secondSession, origin: TEST_ORIGIN })
  t.equal(revoked.status, 200)
  t.equal(await protectedStatus({ cookie: reader.cookie }), 401, 'the revoked session is refused at once, despite the hour of cache')
  t.equal(await protectedStatus({ cookie: secondSession }), 200, 'the other session still works')
})

t.test('sign-out through the gateway makes the next protected call 401 at once, cache or not', async (t) => {
  const { browser } = await signUp(stack)
  const appCalls = app.requests.length
  const before = await browser(`${stack.url}/api/private`)
  t.equal(before.status, 200, 'signed in: the app upstream answers')
  t.equal(app.requests.length, appCalls + 1)
  const out = await postJson(browser, `${stack.url}/auth/sign-out`, {})
  t.equal(out.status, 200)
  // The browser dropped its cookie; a stolen copy of it must not work either.
  const { browser: other, cookie } = await signUp(stack)
  t.equal((await other(`${stack.url}/api/private`)).status, 200)
  t.equal((await postJson(other, `${stack.url}/auth/signout`, {})).status, 200)
  const replay = await fetch(`${stack.url}/api/private`, { headers: { cookie } })
  t.equal(replay.status, 401, 'the signed-out session is refused immediately')
  t.equal(app.requests.length, appCalls + 2, 'the two signed-in calls reached the app upstream, the replay did not')
})

t.test('several session cookies in one header: the gateway decides as better-auth does', async (t) => {
  const { cookie } = await signUp(stack)
  const value = cookie.split('=').slice(1).join('=')
  const forged = 'better-auth.session_token=forged.token'
  const appCalls = app.requests.length
  let signedIn = 0
  for (const header of [`${forged}; ${cookie}`, `${cookie}; ${forged}`, `better-auth.session_token=${value}x; ${cookie}`]) {
    const session = await (await fetch(`${stack.url}/auth/get-session`, { headers: { cookie: header } })).json() as { user?: unknown } | null
    const protectedCall = await fetch(`${stack.url}/api/private`, { headers: { cookie: header } })
    if (session !== null) signedIn++
    t.equal(protectedCall.status === 200, session !== null, `${header.slice(0, 40)}…: gateway ${protectedCall.status}, better-auth ${session === null ? 'anonymous' : 'signed in'}`)
  }
  t.equal(app.requests.length - appCalls, signedIn, 'the app upstream saw exactly the calls better-auth would have let through')
})
