import t from 'tap'
import { createAuthClient } from 'better-auth/client'
import { cookieFetch, gatewayOn, postJson, startTestStack, tempDir, TEST_ORIGIN, uniqueEmail } from '../../helper.ts'
import { closedPortUrl } from '../../upstream.ts'

const PASSWORD = 'correct horse battery'

// One stack for the file, with custom user fields; tests that need another auth-core start their own.
const stack = await startTestStack(t, { AUTH_USER_FIELDS: 'role:string:readonly tier:string level:number beta:boolean' })

t.test('the official better-auth client signs up, reads the session, signs out and signs in through the gateway', async (t) => {
  const browser = cookieFetch()
  const client = createAuthClient({ baseURL: `${stack.url}/auth`, fetchOptions: { customFetchImpl: browser } })
  const email = uniqueEmail()

  const signUp = await client.signUp.email({ email, password: PASSWORD, name: 'Ada Reader' })
  t.equal(signUp.error, null, 'sign-up succeeds')
  t.equal(signUp.data?.user.email, email)
  t.ok(browser.cookies.has('better-auth.session_token'), 'the session cookie came back through the proxy')

  const session = await client.getSession()
  t.equal(session.data?.user.email, email, 'auto sign-in after sign-up')
  t.equal(session.data?.user.name, 'Ada Reader')

  const signOut = await client.signOut()
  t.equal(signOut.error, null)
  const gone = await client.getSession()
  t.equal(gone.data, null, 'no session after sign-out')

  const signIn = await client.signIn.email({ email, password: PASSWORD })
  t.equal(signIn.error, null, 'sign-in succeeds')
  const again = await client.getSession()
  t.equal(again.data?.user.email, email)
})

t.test('aliases reach the same better-auth endpoints and keep the query string', async (t) => {
  const browser = cookieFetch()
  const email = uniqueEmail()
  const up = await postJson(browser, `${stack.url}/auth/signup`, { email, password: PASSWORD, name: 'Alias' })
  t.equal(up.status, 200)
  t.equal(up.headers.get('cache-control'), 'no-store')
  const session = await browser(`${stack.url}/auth/session?disableCookieCache=true`)
  t.equal(session.status, 200)
  t.equal(((await session.json()) as { user: { email: string } }).user.email, email)
  const out = await postJson(browser, `${stack.url}/auth/signout`, {})
  t.equal(out.status, 200)
  const after = await browser(`${stack.url}/auth/session`)
  t.equal(await after.text(), 'null')
  const inAgain = await postJson(browser, `${stack.url}/auth/signin`, { email, password: PASSWORD })
  t.equal(inAgain.status, 200)
  const wrongMethod = await browser(`${stack.url}/auth/signin`)
  t.equal(wrongMethod.status, 404, 'an alias maps only its own method')
})

t.test('custom user fields round-trip; a readonly field is never set by a client', async (t) => {
  const browser = cookieFetch()
  const email = uniqueEmail()
  const up = await postJson(browser, `${stack.url}/auth/signup`, { email, password: PASSWORD, name: 'Fields', tier: 'gold', level: 3, beta: true })
  t.equal(up.status, 200)
  const { user } = await (await browser(`${stack.url}/auth/get-session`)).json() as { user: Record<string, unknown> }
  t.equal(user.tier, 'gold')
  t.equal(user.level, 3)
  t.equal(user.beta, true)

  const sneaky = cookieFetch()
  const refused = await postJson(sneaky, `${stack.url}/auth/signup`, { email: uniqueEmail(), password: PASSWORD, name: 'Sneaky', role: 'admin' })
  t.ok(refused.status >= 400 && refused.status < 500, `setting a readonly field is refused with a 4xx (got ${refused.status})`)
  // Every user has better-auth's default role; none the client asked for.
  const { rows } = await stack.pool.query<{ role: string | null }>('SELECT role FROM "user" WHERE role IS DISTINCT FROM $1', ['user'])
  t.same(rows, [], 'no readonly value was stored')
})

t.test('bad input gets a 4xx with { error, message }, never a 5xx', async (t) => {
  const browser = cookieFetch()
  const email = uniqueEmail()
  await postJson(browser, `${stack.url}/auth/signup`, { email, password: PASSWORD, name: 'First' })

  const cases: Array<[string, string, string, string]> = [
    ['duplicate e-mail', '/auth/sign-up/email', JSON.stringify({ email, password: PASSWORD, name: 'Again' }), 'application/json'],
    ['wrong password', '/auth/sign-in/email', JSON.stringify({ email, password: 'not the password' }), 'application/json'],
    ['short password', '/auth/sign-up/email', JSON.stringify({ email: uniqueEmail(), password: 'short', name: 'S' }), 'application/json'],
    ['long password', '/auth/sign-up/email', JSON.stringify({ email: uniqueEmail(), password: 'x'.repeat(129), name: 'L' }), 'application/json'],
    ['malformed JSON', '/auth/sign-up/email', '{"email": ', 'application/json'],
    ['missing fields', '/auth/sign-up/email', '{}', 'application/json'],
    ['missing password', '/auth/sign-in/email', JSON.stringify({ email }), 'application/json'],
    ['not an e-mail', '/auth/sign-up/email', JSON.stringify({ email: 'nope', password: PASSWORD, name: 'N' }), 'application/json'],
    ['text/plain body', '/auth/sign-in/email', 'email=x', 'text/plain'],
    ['oversized body', '/auth/sign-up/email', JSON.stringify({ email: uniqueEmail(), password: PASSWORD, name: 'x'.repeat(100_000) }), 'application/json']
  ]
  for (const [name, path, body, type] of cases) {
    const response = await fetch(`${stack.url}${path}`, { method: 'POST', headers: { 'content-type': type, origin: TEST_ORIGIN }, body })
    const payload = await response.json() as { error?: unknown, message?: unknown }
    t.ok(response.status >= 400 && response.status < 500, `${name}: 4xx (got ${response.status})`)
    t.type(payload.error, 'string', `${name}: error code`)
    t.type(payload.message, 'string', `${name}: message`)
    t.ok(String(payload.message).length > 0, `${name}: message is a sentence`)
  }
})

t.test('health and readiness; auth-core down answers 503 at once and /ready names it', async (t) => {
  t.same(await (await fetch(`${stack.url}/health`)).json(), { status: 'ok', publicUrl: stack.config.publicUrl }, 'liveness, with the public URL')
  const ready = await fetch(`${stack.url}/ready`)
  t.equal(ready.status, 200)

  // A gateway of its own whose auth-core refuses connections: the stack's stays up for the other tests.
  const gateway = await gatewayOn(t, stack, { AUTH_CORE_URL: await closedPortUrl() })
  const down = await gateway.inject({ method: 'POST', url: '/auth/sign-in/email', headers: { origin: TEST_ORIGIN }, payload: { email: uniqueEmail(), password: PASSWORD } })
  t.equal(down.statusCode, 503)
  // A refused connection, answered as such: waiting on auth-core's deadline would be 504 upstream_timeout.
  t.same(down.json(), { error: 'auth_core_unavailable', message: 'The authentication service is unavailable, try again shortly', requestId: down.headers['x-request-id'] })

  const notReady = await gateway.inject({ method: 'GET', url: '/ready' })
  t.equal(notReady.statusCode, 503)
  const body = notReady.json<{ error: string, message: string, checks: Record<string, string> }>()
  t.equal(body.error, 'not_ready')
  t.match(body.message, /authCore/)
  t.equal(body.checks.postgres, 'ok')
})

t.test('X-Forwarded-For is set by the gateway; a client-sent one is replaced', async (t) => {
  const browser = cookieFetch()
  const email = uniqueEmail()
  const up = await postJson(browser, `${stack.url}/auth/sign-up/email`, { email, password: PASSWORD, name: 'Ip' }, { 'x-forwarded-for': '203.0.113.9' })
  t.equal(up.status, 200)
  const { rows } = await stack.pool.query<{ ip: string | null }>('SELECT s."ipAddress" AS ip FROM session s JOIN "user" u ON u.id = s."userId" WHERE u.email = $1', [email])
  t.equal(rows.length, 1)
  t.equal(rows[0].ip, '127.0.0.1', 'the socket address, not the forged header')
})

t.test('the embedded database keeps users across a restart on the same DATA_DIR', async (t) => {
  const dataDir = tempDir(t)
  const email = uniqueEmail()
  const first = await startTestStack(t, { DATA_DIR: dataDir }, { embedded: true })
  const up = await postJson(cookieFetch(), `${first.url}/auth/signup`, { email, password: PASSWORD, name: 'Persistent' })
  t.equal(up.status, 200)
  await first.close()

  const second = await startTestStack(t, { DATA_DIR: dataDir }, { embedded: true })
  const browser = cookieFetch()
  const client = createAuthClient({ baseURL: `${second.url}/auth`, fetchOptions: { customFetchImpl: browser } })
  const signIn = await client.signIn.email({ email, password: PASSWORD })
  t.equal(signIn.error, null, 'the user signs in after the restart')
  t.equal((await client.getSession()).data?.user.name, 'Persistent')
})

t.test('session cookie attributes: Lax by default; SameSite=None, Secure, Partitioned with COOKIE_SAME_SITE=none', async (t) => {
  const laxUp = await postJson(fetch, `${stack.url}/auth/signup`, { email: uniqueEmail(), password: PASSWORD, name: 'Lax' }, { origin: TEST_ORIGIN })
  const laxCookie = laxUp.headers.getSetCookie().find((c) => c.startsWith('better-auth.session_token=')) ?? ''
  t.match(laxCookie, /; HttpOnly/i)
  t.match(laxCookie, /; SameSite=Lax/i)
  t.notMatch(laxCookie, /; Secure/i, 'no Secure over an http PUBLIC_URL')

  const crossSite = await startTestStack(t, { PUBLIC_URL: 'https://auth.example.com', COOKIE_SAME_SITE: 'none' })
  const browser = cookieFetch()
  const up = await postJson(browser, `${crossSite.url}/auth/signup`, { email: uniqueEmail(), password: PASSWORD, name: 'Cross' })
  t.equal(up.status, 200)
  const cookie = up.headers.getSetCookie().find((c) => c.startsWith('__Secure-better-auth.session_token=')) ?? ''
  t.match(cookie, /; SameSite=None/i)
  t.match(cookie, /; Secure/i)
  t.match(cookie, /; Partitioned/i)
  t.match(cookie, /; HttpOnly/i)
  const jwt = await browser(`${crossSite.url}/auth/jwt`)
  t.equal(jwt.status, 200, 'the gateway resolves the __Secure- session cookie')
})
