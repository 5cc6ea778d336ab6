import t from 'tap'
import type { Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { postJson, TEST_ORIGIN, uniqueEmail } from '../../helper.ts'
import { browserJar, sessionCookieOf, signInAtIdp, startOidcStack } from '../../oidc-provider.ts'
import type { IdpAccount } from '../../oidc-provider.ts'
import { PASSWORD, signUp } from '../../readers.ts'

/*
 * The social / OpenID Connect sign-in as an attacker sees it (docs/social-sign-in.md), over real
 * HTTP on loopback: open redirects through every redirect parameter, the callback's final and error
 * redirects, the error page, login CSRF and cross-browser state, a code sent to another provider's
 * callback, odd provider ids, look-alike and case-changed addresses, `email_verified` as a string,
 * claims naming server-only fields, linking and unlinking across users, token leaks, and 5xx.
 *
 * The provider here is `oidc-provider` like test/oidc-provider.ts's, but it puts the scope's claims
 * in the ID token too (`conformIdTokenClaims: false`, as Entra, Google or Keycloak do), so
 * better-auth reads the profile from the ID token rather than from userinfo, and it releases more
 * claims (`emailVerified`, `id`, `userId`…) so a hostile claim can be tried.
 */
const PROVIDER = 'corp'
const GITHUB_SECRET = 'github-client-secret-never-shown'
const { publicUrl, idp, stack } = await startOidcStack(t, PROVIDER, {
  // Configured so its callback path exists; github.com is not reached from the tests.
  GITHUB_CLIENT_ID: 'github-client-id',
  GITHUB_CLIENT_SECRET: GITHUB_SECRET
}, { claimsInIdToken: true, profileClaims: ['groups', 'role', 'banned', 'emailVerified', 'id', 'userId', 'image', 'createdAt', 'twoFactorEnabled'] })
if (stack.url !== publicUrl) throw new Error(`the gateway listens on ${stack.url}, not ${publicUrl}`)
const port = Number(new URL(publicUrl).port)

// Every answer the gateway gives in this file (the stack runs in this process: only its URL counts).
const serverErrors: string[] = []
const realFetch = globalThis.fetch
globalThis.fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
  const response = await realFetch(input, init)
  const url = typeof input === 'string' ? input : input instanceof URL ? input.toString() : input.url
  if (url.startsWith(publicUrl) && response.status >= 500) serverErrors.push(`${init?.method ?? 'GET'} ${url} → ${response.status}`)
  return response
}
t.teardown(() => { globalThis.fetch = realFetch })

type Browser = ReturnType<typeof browserJar>
const ORIGIN = { origin: TEST_ORIGIN }

let logins = 0
/** A person at the provider; the login to type at its sign-in form. */
function idpAccount (account: Partial<IdpAccount> = {}): { login: string } & IdpAccount {
  logins += 1
  const login = `attacker-${logins}-${randomBytes(3).toString('hex')}`
  const full: IdpAccount = { email: uniqueEmail('oidc'), emailVerified: true, name: 'Corp Person', ...account }
  idp.accounts.set(login, full)
  return { login, ...full }
}

/** From a provider authorization URL through the provider's sign-in and consent, to its redirect back to the gateway (not followed). */
async function throughIdp (browser: Browser, authorizeUrl: string, login: string): Promise<string> {
  let next = authorizeUrl
  for (let hop = 0; hop < 12; hop++) {
    const response = await browser.go(next)
    if (response.status >= 300 && response.status < 400) {
      const location = new URL(response.headers.get('location') ?? '', next).toString()
      await response.arrayBuffer()
      if (location.startsWith(publicUrl)) return location
      next = location
      continue
    }
    const page = await response.text()
    if (response.status !== 200) throw new Error(`the provider answered ${response.status}: ${page.slice(0, 300)}`)
    const form = new URLSearchParams(page.includes('name="login"') ? { prompt: 'login', login, password: 'any' } : { prompt: 'consent' })
    const submitted = await browser.go(next, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form.toString() })
    next = new URL(submitted.headers.get('location') ?? '', next).toString()
    await submitted.arrayBuffer()
  }
  throw new Error('the provider never redirected back')
}

/** The callback URL (code and state) for `login`, the state cookie in `browser`. */
async function callbackFor (browser: Browser, login: string, callbackURL = `${TEST_ORIGIN}/in`): Promise<string> {
  return (await signInAtIdp(browser, { gateway: publicUrl, provider: PROVIDER, login, callbackURL, origin: TEST_ORIGIN })).callback
}

/** A whole sign-in: the gateway's answer to the callback, and the session cookie if any. */
async function attempt (login: string, callbackURL = `${TEST_ORIGIN}/in`): Promise<{ status: number, location: string, cookie: string | undefined }> {
  const browser = browserJar()
  const landed = await browser.go(await callbackFor(browser, login, callbackURL))
  await landed.arrayBuffer()
  return { status: landed.status, location: landed.headers.get('location') ?? '', cookie: sessionCookieOf(browser) }
}

/** Where a redirect goes, resolved as a browser resolves it. */
const originOf = (location: string, base = publicUrl): string => new URL(location, base).origin
const safeOrigin = (location: string): boolean => [publicUrl, TEST_ORIGIN].includes(originOf(location))

/** A refusal as a browser gets it: an error redirect to an allowed origin, no session. */
function refused (t: Test, result: { status: number, location: string, cookie: string | undefined }, what: string): void {
  t.equal(result.status, 302, `${what}: a redirect (got ${result.status})`)
  t.match(result.location, /[?&]error=/, `${what}: an error redirect (got ${result.location})`)
  t.ok(safeOrigin(result.location), `${what}: to an allowed origin (got ${result.location})`)
  t.equal(result.cookie, undefined, `${what}: no session`)
}

async function userOf (cookie: string | undefined): Promise<{ id: string, email: string, role: string, emailVerified: boolean } | null> {
  if (cookie === undefined) return null
  const me = await fetch(`${publicUrl}/auth/me`, { headers: { cookie } })
  if (me.status !== 200) { await me.arrayBuffer(); return null }
  return ((await me.json()) as { user: { id: string, email: string, role: string, emailVerified: boolean } }).user
}

async function providersOf (userId: string): Promise<string[]> {
  const { rows } = await stack.pool.query<{ provider: string }>('SELECT "providerId" AS provider FROM account WHERE "userId" = $1 ORDER BY 1', [userId])
  return rows.map((row) => row.provider)
}

/** A password account with the address given, its address verified (so linking is possible at all). */
async function verifiedReader (email: string): Promise<{ userId: string, email: string, cookie: string }> {
  const reader = await signUp(stack, { email })
  await stack.pool.query('UPDATE "user" SET "emailVerified" = true WHERE id = $1', [reader.userId])
  return { userId: reader.userId, email, cookie: reader.cookie }
}

const sessionCookieIn = (response: Response): boolean => response.headers.getSetCookie().some((line) => /session_token=[^;]+/.test(line) && !/max-age=0/i.test(line))

t.test('GET /auth/providers names the providers, never a client id, secret or issuer secret', async (t) => {
  for (const method of ['GET', 'HEAD'] as const) {
    const response = await fetch(`${publicUrl}/auth/providers`, { method })
    // HEAD is better-auth's 404 (its endpoint is GET only): no body, no secret, no 5xx.
    if (method === 'GET') t.equal(response.status, 200, method)
    else t.ok(response.status < 500, `${method}: no 5xx (got ${response.status})`)
    const text = await response.text()
    for (const secret of [idp.clientSecret, GITHUB_SECRET, 'github-client-id', `"${idp.clientId}"`]) t.notOk(text.includes(secret), `${method}: no ${secret}`)
  }
  const listed = await (await fetch(`${publicUrl}/auth/providers?provider=${PROVIDER}&clientSecret=1`)).json() as { providers: unknown[] }
  t.same(listed, { providers: [{ id: 'github', type: 'social' }, { id: PROVIDER, type: 'oidc' }] }, 'the same list whatever the query')
})

// Redirect targets a browser would take off-site, or to a script.
const FOREIGN = [
  'https://evil.example/steal',
  'HTTPS://EVIL.EXAMPLE/',
  '//evil.example',
  '///evil.example',
  '%2F%2Fevil.example',
  '/\\evil.example',
  '\\\\evil.example',
  '/%5Cevil.example',
  '/%5c%5cevil.example',
  '/x/..//evil.example',
  '/x/%2e%2e//evil.example',
  '/%09/evil.example',
  '/\t/evil.example',
  ' //evil.example',
  '\n//evil.example',
  'javascript:alert(1)',
  'JaVaScRiPt:alert(document.cookie)',
  'javascript://localhost:3000/%0aalert(1)',
  'data:text/html,<script>alert(1)</script>',
  'vbscript:msgbox(1)',
  'http:evil.example',
  'http:/evil.example',
  'https:\\\\evil.example',
  'http://localhost:3000@evil.example/',
  'http://localhost:3000%40evil.example/',
  'http://user:pass@localhost:3000/',
  'http://evil.example\\@localhost:3000/',
  'http://evil.example#@localhost:3000/',
  'http://evil.example?@localhost:3000/',
  'http://localhost:3001/',
  'http://localhost:80/',
  'https://localhost:3000/',
  'http://localhost:3000.evil.example/',
  'http://localhost.:3000/',
  'http://127.0.0.1:3000/',
  'http://[::1]:3000/',
  `http://127.0.0.1:${port}.evil.example/`,
  `http://127.0.0.1:${port}@evil.example/`,
  `http://127.0.0.1:${port + 1}/`,
  'ftp://localhost:3000/',
  '//evil%E3%80%82example'
]

// Paths the gateway lets through: an encoded slash or a full stop look-alike is no separator to a
// browser, so they stay paths on the gateway (checked below by following them to the end).
const ENCODED_PATHS = ['/%2F%2Fevil.example', '/%2f%2fevil.example', '/x/%2E%2E/%2F/evil.example', '/\u3002evil.example']

t.test('no redirect parameter of sign-in/social takes a browser off-site, however it is spelled or sent', async (t) => {
  const good = await postJson(fetch, `${publicUrl}/auth/sign-in/social`, { provider: PROVIDER, callbackURL: `${TEST_ORIGIN}/in`, errorCallbackURL: `${publicUrl}/auth/error`, newUserCallbackURL: '/welcome' }, ORIGIN)
  t.equal(good.status, 200, 'the allowed origin, the public URL and a path are accepted')
  t.equal(originOf(((await good.json()) as { url: string }).url), idp.issuer, 'to the provider')

  for (const target of FOREIGN) {
    for (const name of ['callbackURL', 'errorCallbackURL', 'newUserCallbackURL']) {
      const body = { provider: PROVIDER, callbackURL: `${TEST_ORIGIN}/in`, [name]: target }
      const json = await postJson(fetch, `${publicUrl}/auth/sign-in/social`, body, ORIGIN)
      t.equal(json.status, 400, `JSON ${name}=${JSON.stringify(target)}: 400`)
      await json.arrayBuffer()
    }
    const query = await postJson(fetch, `${publicUrl}/auth/sign-in/social?callbackURL=${encodeURIComponent(target)}`, { provider: PROVIDER }, ORIGIN)
    t.equal(query.status, 400, `query callbackURL=${JSON.stringify(target)}: 400`)
    await query.arrayBuffer()
    const form = await fetch(`${publicUrl}/auth/sign-in/social`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...ORIGIN }, body: new URLSearchParams({ provider: PROVIDER, callbackURL: target }).toString() })
    t.ok(form.status >= 400 && form.status < 500, `form callbackURL=${JSON.stringify(target)}: 4xx (got ${form.status})`)
    await form.arrayBuffer()
  }

  // Not a string, or several: refused, not passed on unchecked.
  for (const value of [['//evil.example'], [`${TEST_ORIGIN}/in`, '//evil.example'], { href: '//evil.example' }, 7, null, true]) {
    const response = await postJson(fetch, `${publicUrl}/auth/sign-in/social`, { provider: PROVIDER, callbackURL: value }, ORIGIN)
    t.ok(response.status >= 400 && response.status < 500, `callbackURL ${JSON.stringify(value)}: 4xx (got ${response.status})`)
    await response.arrayBuffer()
  }
  // A duplicated key: JSON.parse keeps the last one, as better-call does.
  const dup = await fetch(`${publicUrl}/auth/sign-in/social`, { method: 'POST', headers: { 'content-type': 'application/json', ...ORIGIN }, body: `{"provider":"${PROVIDER}","callbackURL":"${TEST_ORIGIN}/in","callbackURL":"//evil.example"}` })
  t.equal(dup.status, 400, 'a duplicated callbackURL key: 400')
  await dup.arrayBuffer()
  // Content types the gateway might not read as better-call does.
  for (const type of ['application/JSON', 'application/vnd.api+json', 'application/json; charset=utf-16', 'text/plain', 'application/x-www-form-urlencoded;x=application/json', 'text/plain; application/x-www-form-urlencoded', '']) {
    const response = await fetch(`${publicUrl}/auth/sign-in/social`, { method: 'POST', headers: { 'content-type': type, ...ORIGIN }, body: JSON.stringify({ provider: PROVIDER, callbackURL: '//evil.example' }) })
    const text = await response.text()
    const url = response.status === 200 ? (JSON.parse(text) as { url?: string }).url : undefined
    t.ok(response.status >= 400 && response.status < 500, `content type ${JSON.stringify(type)} with a foreign callback: 4xx (got ${response.status} ${text.slice(0, 120)}${url === undefined ? '' : ` ${url}`})`)
  }
})

t.test('the callback\'s final, new-user and error redirects stay on the allowed origins', async (t) => {
  const person = idpAccount()
  const browser = browserJar()
  const started = await browser.go(`${publicUrl}/auth/sign-in/social`, { method: 'POST', headers: { 'content-type': 'application/json', ...ORIGIN }, body: JSON.stringify({ provider: PROVIDER, callbackURL: `${TEST_ORIGIN}/in`, newUserCallbackURL: `${TEST_ORIGIN}/welcome`, errorCallbackURL: `${TEST_ORIGIN}/oops` }) })
  const { url } = await started.json() as { url: string }
  const callback = await throughIdp(browser, url, person.login)

  // Redirect parameters slipped into the callback itself.
  for (const [name, value] of [['callbackURL', '//evil.example'], ['errorCallbackURL', 'https://evil.example'], ['newUserCallbackURL', 'https://evil.example'], ['redirectTo', 'javascript:alert(1)']]) {
    const tampered = await browser.go(`${callback}&${name}=${encodeURIComponent(value)}`)
    t.equal(tampered.status, 400, `the callback with ${name}=${value}: 400`)
    await tampered.arrayBuffer()
  }
  const landed = await browser.go(callback)
  t.equal(landed.status, 302)
  t.equal(landed.headers.get('location'), `${TEST_ORIGIN}/welcome`, 'a new user lands on newUserCallbackURL, as given')
  t.ok(sessionCookieOf(browser), 'signed in')

  // The provider says no (or an attacker says it did), with a hostile description: the error
  // redirect goes to errorCallbackURL, its description only a query parameter.
  const denied = browserJar()
  const again = await denied.go(`${publicUrl}/auth/sign-in/social`, { method: 'POST', headers: { 'content-type': 'application/json', ...ORIGIN }, body: JSON.stringify({ provider: PROVIDER, callbackURL: `${TEST_ORIGIN}/in`, errorCallbackURL: `${TEST_ORIGIN}/oops` }) })
  const state = new URL(((await again.json()) as { url: string }).url).searchParams.get('state') ?? ''
  const hostile = '"><script>alert(1)</script>\r\nLocation: https://evil.example'
  const failed = await denied.go(`${publicUrl}/auth/callback/${PROVIDER}?state=${encodeURIComponent(state)}&error=${encodeURIComponent('access_denied\r\nSet-Cookie: x=1')}&error_description=${encodeURIComponent(hostile)}`)
  await failed.arrayBuffer()
  const location = failed.headers.get('location') ?? ''
  t.equal(failed.status, 302)
  t.equal(originOf(location), TEST_ORIGIN, `to errorCallbackURL's origin (got ${location})`)
  t.ok(new URL(location).pathname === '/oops', 'its path')
  t.notOk(/[\r\n<>"]/.test(location), 'nothing raw in the Location header')
  t.notOk(failed.headers.getSetCookie().some((line) => line.startsWith('x=')), 'no header injected')
  t.equal(sessionCookieOf(denied), undefined, 'no session')
})

t.test('encoded slashes in a callbackURL the gateway lets through: refused by better-auth, or landing on the gateway', async (t) => {
  for (const target of ENCODED_PATHS) {
    const browser = browserJar()
    const started = await browser.go(`${publicUrl}/auth/sign-in/social`, { method: 'POST', headers: { 'content-type': 'application/json', ...ORIGIN }, body: JSON.stringify({ provider: PROVIDER, callbackURL: target }) })
    if (started.status !== 200) {
      t.ok(started.status >= 400 && started.status < 500, `${target}: refused at sign-in/social (got ${started.status})`)
      await started.arrayBuffer()
      continue
    }
    const { url } = await started.json() as { url: string }
    const landed = await browser.go(await throughIdp(browser, url, idpAccount().login))
    await landed.arrayBuffer()
    const location = landed.headers.get('location') ?? ''
    // Found by this pass: `/\u3002evil.example` (a raw non-Latin-1 character) once passed the
    // gateway's check and better-auth's, and the callback answered 500 (better-auth writes the raw
    // callbackURL into `Location`). The gateway now refuses a target that is not printable ASCII.
    t.equal(landed.status, 302, `${target}: the callback redirects (got ${landed.status})`)
    t.notOk(/^\s*[/\\]{2}/.test(location), `${target}: the Location is no protocol-relative URL (got ${location})`)
    t.equal(originOf(location), publicUrl, `${target}: resolves on the gateway (got ${location})`)
    // And the gateway, asked for that path, does not bounce the browser on.
    const followed = await fetch(new URL(location, publicUrl), { redirect: 'manual' })
    await followed.arrayBuffer()
    t.ok(followed.status < 500, `${target}: no 5xx there`)
    if (followed.status >= 300 && followed.status < 400) t.ok(safeOrigin(followed.headers.get('location') ?? ''), `${target}: no redirect off-site from there`)
  }
})

t.test('the error page escapes what it reflects', async (t) => {
  const payload = '<script>alert(1)</script>'
  for (const query of [
    `error=${encodeURIComponent(payload)}`,
    `error=x&error_description=${encodeURIComponent(`${payload}<img src=x onerror=alert(1)>`)}`,
    `error_description=${encodeURIComponent('"><svg onload=alert(1)>')}`,
    `error=${encodeURIComponent("x'onmouseover='alert(1)")}`,
    `error=${encodeURIComponent('javascript:alert(1)')}&error_description=${encodeURIComponent("' onfocus='alert(1)' autofocus='")}`
  ]) {
    const response = await fetch(`${publicUrl}/auth/error?${query}`, { redirect: 'manual' })
    const body = await response.text()
    t.ok(response.status < 500, `${query}: no 5xx (got ${response.status})`)
    if (response.status >= 300 && response.status < 400) t.ok(safeOrigin(response.headers.get('location') ?? ''), 'a redirect stays home')
    for (const raw of ['<script>alert', '<img src=x', '<svg onload', "onmouseover='alert", "onfocus='alert"]) t.notOk(body.includes(raw), `${query}: ${raw} not reflected raw`)
  }
})

t.test('login CSRF: an attacker\'s callback (his code, his state) does not sign a victim\'s browser in', async (t) => {
  const attacker = idpAccount()
  const attackerBrowser = browserJar()
  const planted = await callbackFor(attackerBrowser, attacker.login)

  const victim = browserJar()
  const landed = await victim.go(planted)
  await landed.arrayBuffer()
  refused(t, { status: landed.status, location: landed.headers.get('location') ?? '', cookie: sessionCookieOf(victim) }, 'a victim browser with no state cookie')

  // The victim has a sign-in of her own under way (her own state cookie): the attacker's state is still not hers.
  const busy = browserJar()
  const started = await busy.go(`${publicUrl}/auth/sign-in/social`, { method: 'POST', headers: { 'content-type': 'application/json', ...ORIGIN }, body: JSON.stringify({ provider: PROVIDER, callbackURL: `${TEST_ORIGIN}/in` }) })
  await started.arrayBuffer()
  const attacker2 = browserJar()
  const planted2 = await callbackFor(attacker2, attacker.login)
  const crossed = await busy.go(planted2)
  await crossed.arrayBuffer()
  refused(t, { status: crossed.status, location: crossed.headers.get('location') ?? '', cookie: sessionCookieOf(busy) }, 'a victim browser with its own state cookie')

  // The victim's state cookie with the attacker's code.
  const mine = browserJar()
  const victimStarted = await mine.go(`${publicUrl}/auth/sign-in/social`, { method: 'POST', headers: { 'content-type': 'application/json', ...ORIGIN }, body: JSON.stringify({ provider: PROVIDER, callbackURL: `${TEST_ORIGIN}/in` }) })
  const victimState = new URL(((await victimStarted.json()) as { url: string }).url).searchParams.get('state') ?? ''
  const attacker3 = browserJar()
  const planted3 = new URL(await callbackFor(attacker3, attacker.login))
  planted3.searchParams.set('state', victimState)
  const swapped = await mine.go(planted3.toString())
  await swapped.arrayBuffer()
  refused(t, { status: swapped.status, location: swapped.headers.get('location') ?? '', cookie: sessionCookieOf(mine) }, 'the victim\'s own state with the attacker\'s code (PKCE binds the code)')

  // And the attacker's state copied into the victim's cookie jar name-for-name is what a stolen cookie is: out of scope.
  t.equal((await attempt(attacker.login)).status, 302, 'the attacker\'s own sign-in still works')
})

t.test('a code and state for one provider, sent to another provider\'s callback or an odd spelling of it', async (t) => {
  const person = idpAccount()
  for (const path of ['github', 'google', 'CORP', 'Corp', `${PROVIDER}%2F..%2Fgithub`, `..%2F${PROVIDER}`, '__proto__', 'constructor', 'toString', `${PROVIDER}%00`, `${PROVIDER}.`, '%63orp']) {
    const browser = browserJar()
    const callback = new URL(await callbackFor(browser, person.login))
    const moved = `${publicUrl}/auth/callback/${path}${callback.search}`
    const response = await browser.go(moved)
    await response.arrayBuffer()
    const location = response.headers.get('location') ?? ''
    t.ok(response.status < 500, `/auth/callback/${path}: no 5xx (got ${response.status})`)
    t.ok(location === '' || safeOrigin(location), `/auth/callback/${path}: no foreign redirect (got ${location})`)
    if (path === '%63orp') continue // `%63` is `c`: the same route, decoded (a sign-in is fine there)
    t.equal(sessionCookieOf(browser), undefined, `/auth/callback/${path}: no session (got ${response.status} ${location})`)
  }
  // The OAuth2 plugin's own callback of older better-auth versions, and a POST (form_post) callback.
  const browser = browserJar()
  const callback = new URL(await callbackFor(browser, person.login))
  const legacy = await browser.go(`${publicUrl}/auth/oauth2/callback/${PROVIDER}${callback.search}`)
  await legacy.arrayBuffer()
  t.ok(legacy.status < 500 && sessionCookieOf(browser) === undefined, `/auth/oauth2/callback: no session, no 5xx (got ${legacy.status})`)
  const posted = await browser.go(`${publicUrl}/auth/callback/${PROVIDER}`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `${callback.search.slice(1)}&callbackURL=${encodeURIComponent('//evil.example')}` })
  t.equal(posted.status, 400, 'a form_post callback with a foreign callbackURL: 400')
  await posted.arrayBuffer()
})

t.test('odd provider ids on sign-in/social are refused, never a 5xx', async (t) => {
  for (const provider of ['CORP', 'Corp', ` ${PROVIDER}`, `${PROVIDER} `, `../${PROVIDER}`, `${PROVIDER}/../github`, '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'credential', 'email', '', 'x'.repeat(10000), 7, null, [PROVIDER], { id: PROVIDER }]) {
    const response = await postJson(fetch, `${publicUrl}/auth/sign-in/social`, { provider, callbackURL: `${TEST_ORIGIN}/in` }, ORIGIN)
    const text = await response.text()
    t.ok(response.status >= 400 && response.status < 500, `provider ${JSON.stringify(provider).slice(0, 40)}: 4xx (got ${response.status} ${text.slice(0, 100)})`)
  }
  const linkAs = await signUp(stack)
  for (const provider of ['CORP', '__proto__', 'constructor', `../${PROVIDER}`]) {
    const response = await postJson(fetch, `${publicUrl}/auth/link-social`, { provider, callbackURL: `${TEST_ORIGIN}/in` }, { cookie: linkAs.cookie, ...ORIGIN })
    const text = await response.text()
    t.ok(response.status >= 400 && response.status < 500, `link-social ${provider}: 4xx (got ${response.status} ${text.slice(0, 100)})`)
  }
})

t.test('an ID token posted to sign-in/social (none-signed, garbage) signs nobody in', async (t) => {
  const victim = await verifiedReader(uniqueEmail('idtoken'))
  const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')
  const now = Math.floor(Date.now() / 1000)
  const claims = { iss: idp.issuer, aud: idp.clientId, sub: 'forged', email: victim.email, email_verified: true, iat: now, exp: now + 600, nonce: 'n' }
  for (const token of [`${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`, `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}.${Buffer.from('x').toString('base64url')}`, 'not-a-jwt', '']) {
    for (const provider of [PROVIDER, 'github']) {
      const response = await postJson(fetch, `${publicUrl}/auth/sign-in/social`, { provider, callbackURL: `${TEST_ORIGIN}/in`, idToken: { token, nonce: 'n', accessToken: 'a' } }, ORIGIN)
      const text = await response.text()
      t.ok(response.status >= 400 && response.status < 500, `${provider} idToken ${token.slice(0, 20)}…: 4xx (got ${response.status} ${text.slice(0, 100)})`)
      t.notOk(sessionCookieIn(response), 'no session cookie')
    }
  }
  t.same(await providersOf(victim.userId), ['credential'], 'nothing linked to the victim')
})

t.test('an address that differs in case, or looks like another\'s, is not linked to that account', async (t) => {
  const tag = randomBytes(3).toString('hex')
  const kate = await verifiedReader(`kate-${tag}@example.com`)

  // The provider has not verified it, in any case.
  const upper = idpAccount({ email: kate.email.toUpperCase(), emailVerified: false })
  refused(t, await attempt(upper.login), 'the address upper-cased, unverified')
  t.same(await providersOf(kate.userId), ['credential'], 'nothing linked')
  const { rows: twins } = await stack.pool.query('SELECT 1 FROM "user" WHERE lower(email) = $1', [kate.email])
  t.equal(twins.length, 1, 'and no second account of the same address in another case')

  // Look-alikes the provider says it verified: other addresses, so never Kate's account.
  for (const [what, email] of [
    ['Cyrillic а', `kаte-${tag}@example.com`],
    ['full-width ｋ', `ｋate-${tag}@example.com`],
    ['a trailing space', `${kate.email} `],
    ['a trailing dot in the domain', `${kate.email}.`],
    // U+212A KELVIN SIGN: `'\u212Aate'.toLowerCase()` is `'kate'`.
    ['the Kelvin sign K (U+212A)', `\u212Aate-${tag}@example.com`],
    ['dotless ı upper-cased? (U+0131)', `kate-${tag}@examplı.com`]
  ] as const) {
    const lookalike = idpAccount({ email, emailVerified: true })
    const result = await attempt(lookalike.login)
    t.ok(result.status < 500, `${what}: no 5xx (got ${result.status})`)
    t.ok(safeOrigin(result.location), `${what}: no foreign redirect`)
    const user = await userOf(result.cookie)
    // Found by this pass: better-auth looks the provider's address up as `email.toLowerCase()`, and
    // U+212A lower-cases to an ASCII `k`, so a provider account whose (verified) address was
    // `\u212Aate-…@example.com` signed in as the verified account `kate-…@example.com`. A provider
    // now vouches only for printable-ASCII addresses (`vouchable`).
    t.not(user?.id, kate.userId, `${what} (${JSON.stringify(email)}): not signed in as Kate (got ${result.location})`)
  }
  t.same(await providersOf(kate.userId), ['credential'], 'nothing ever linked to Kate')
})

t.test('email_verified that is not the boolean true, or a claim named emailVerified, does not link', async (t) => {
  const victim = await verifiedReader(uniqueEmail('victim'))
  for (const [what, claims] of [
    ['"false"', { email_verified: 'false' }],
    ['"False"', { email_verified: 'False' }],
    ['"0"', { email_verified: '0' }],
    ['0', { email_verified: 0 }],
    ['1', { email_verified: 1 }],
    ['"yes"', { email_verified: 'yes' }],
    ['["true"]', { email_verified: ['true'] }],
    ['{}', { email_verified: {} }],
    ['null', { email_verified: null }],
    // A custom claim spelled as better-auth's own field, next to an honest email_verified: false.
    // Found by this pass: better-auth builds the profile from the ID token as
    // `{ emailVerified: parse(email_verified), ...claims }`, so a claim literally named
    // `emailVerified` overrode the provider's `email_verified`; the verdict is now `email_verified`'s.
    ['false, with an emailVerified: true claim', { email_verified: false, emailVerified: true }],
    ['false, with an emailVerified: "true" claim', { email_verified: false, emailVerified: 'true' }]
  ] as const) {
    const person = idpAccount({ email: victim.email, emailVerified: false, claims: { ...claims } })
    const result = await attempt(person.login)
    t.ok(result.status < 500, `email_verified ${what}: no 5xx`)
    const user = await userOf(result.cookie)
    t.not(user?.id, victim.userId, `email_verified ${what}: not signed in as the victim (got ${result.location})`)
    t.equal(result.cookie, undefined, `email_verified ${what}: no session (got ${result.location})`)
  }
  t.same(await providersOf(victim.userId), ['credential'], 'nothing linked to the victim')

  // "true" is what AWS Cognito sends: it is a yes (a new address, so a new account, verified).
  const cognito = idpAccount({ claims: { email_verified: 'true' } })
  const signedIn = await userOf((await attempt(cognito.login)).cookie)
  t.equal(signedIn?.emailVerified, true, '"true" counts as verified')
})

t.test('claims naming server-only fields set none of them; a ban holds against the provider', async (t) => {
  const victim = await verifiedReader(uniqueEmail('victim'))
  const person = idpAccount({
    emailVerified: false,
    claims: { role: 'admin', banned: false, id: victim.userId, userId: victim.userId, emailVerified: true, createdAt: '2000-01-01T00:00:00Z', twoFactorEnabled: true, groups: ['admin'] }
  })
  const first = await attempt(person.login)
  t.equal(first.status, 302)
  t.equal(first.location, `${TEST_ORIGIN}/in`, 'a new account, signed in')
  const user = await userOf(first.cookie)
  t.not(user?.id, victim.userId, 'an id claim is not the user id')
  t.equal(user?.role, 'user', 'a role claim is not the role')
  const { rows: [row] } = await stack.pool.query<{ id: string, role: string, emailVerified: boolean, banned: boolean | null, twoFactorEnabled: boolean | null, createdAt: Date }>('SELECT id, role, "emailVerified", banned, "twoFactorEnabled", "createdAt" FROM "user" WHERE email = $1', [person.email.toLowerCase()])
  t.equal(row.role, 'user')
  t.notOk(row.twoFactorEnabled, 'twoFactorEnabled not from a claim')
  t.ok(row.createdAt.getFullYear() > 2000, 'createdAt not from a claim')
  // The emailVerified claim above, on a new account: it must not verify the address.
  t.equal(row.emailVerified, false, 'an emailVerified claim does not verify the address (the provider said false)')
  t.same(await providersOf(victim.userId), ['credential'], 'nothing linked to the victim')
  const admin = await fetch(`${publicUrl}/auth/admin/list-users`, { headers: { cookie: first.cookie ?? '' } })
  t.equal(admin.status, 403, 'no admin route')
  await admin.arrayBuffer()

  // An administrator bans the account; the provider's banned: false does not lift it.
  await stack.pool.query('UPDATE "user" SET banned = true WHERE id = $1', [row.id])
  const banned = await attempt(person.login)
  refused(t, banned, 'a banned user signing in with banned: false')
  t.equal((await stack.pool.query<{ banned: boolean }>('SELECT banned FROM "user" WHERE id = $1', [row.id])).rows[0].banned, true, 'still banned')
})

t.test('linking: another browser cannot finish a link; a link takes no other address nor another user\'s provider account', async (t) => {
  // The attacker starts linking to his account and has the victim's browser finish it at the provider.
  const mallory = await signUp(stack)
  const started = await postJson(fetch, `${publicUrl}/auth/link-social`, { provider: PROVIDER, callbackURL: `${TEST_ORIGIN}/linked` }, { cookie: mallory.cookie, ...ORIGIN })
  t.equal(started.status, 200)
  const { url } = await started.json() as { url: string }
  const victimAtIdp = idpAccount()
  const victimBrowser = browserJar()
  const landed = await victimBrowser.go(await throughIdp(victimBrowser, url, victimAtIdp.login))
  await landed.arrayBuffer()
  refused(t, { status: landed.status, location: landed.headers.get('location') ?? '', cookie: sessionCookieOf(victimBrowser) }, 'a link finished in another browser')
  t.same(await providersOf(mallory.userId), ['credential'], 'the victim\'s provider account is not linked to the attacker')

  // The attacker's own browser, the victim's provider account (another address): refused.
  const malloryBrowser = browserJar()
  for (const pair of mallory.cookie.split('; ')) { const at = pair.indexOf('='); malloryBrowser.cookies.set(pair.slice(0, at), pair.slice(at + 1)) }
  const own = await malloryBrowser.go(`${publicUrl}/auth/link-social`, { method: 'POST', headers: { 'content-type': 'application/json', ...ORIGIN }, body: JSON.stringify({ provider: PROVIDER, callbackURL: `${TEST_ORIGIN}/linked`, errorCallbackURL: `${TEST_ORIGIN}/oops` }) })
  const ownUrl = ((await own.json()) as { url: string }).url
  const other = await malloryBrowser.go(await throughIdp(malloryBrowser, ownUrl, victimAtIdp.login))
  await other.arrayBuffer()
  t.match(other.headers.get('location') ?? '', /error=/, `another address: an error (got ${other.headers.get('location')})`)
  t.ok(safeOrigin(other.headers.get('location') ?? ''), 'at home')
  t.same(await providersOf(mallory.userId), ['credential'], 'not linked')

  // A provider account already someone's, its address changed to the attacker's: not moved to him.
  const owner = await attempt(victimAtIdp.login)
  const ownerUser = await userOf(owner.cookie)
  t.ok(ownerUser, 'the victim signs in with her provider account')
  idp.accounts.set(victimAtIdp.login, { ...victimAtIdp, email: mallory.email })
  const steal = browserJar()
  for (const pair of mallory.cookie.split('; ')) { const at = pair.indexOf('='); steal.cookies.set(pair.slice(0, at), pair.slice(at + 1)) }
  const begin = await steal.go(`${publicUrl}/auth/link-social`, { method: 'POST', headers: { 'content-type': 'application/json', ...ORIGIN }, body: JSON.stringify({ provider: PROVIDER, callbackURL: `${TEST_ORIGIN}/linked` }) })
  const stolen = await steal.go(await throughIdp(steal, ((await begin.json()) as { url: string }).url, victimAtIdp.login))
  await stolen.arrayBuffer()
  t.match(stolen.headers.get('location') ?? '', /error=/, `another user's provider account: an error (got ${stolen.headers.get('location')})`)
  t.same(await providersOf(mallory.userId), ['credential'], 'not linked to the attacker')
  t.same(await providersOf(ownerUser?.id ?? ''), [PROVIDER], 'still the victim\'s')

  // link-social with a foreign callback, or without a session.
  const foreign = await postJson(fetch, `${publicUrl}/auth/link-social`, { provider: PROVIDER, callbackURL: '//evil.example' }, { cookie: mallory.cookie, ...ORIGIN })
  t.equal(foreign.status, 400, 'a foreign callbackURL: 400')
  await foreign.arrayBuffer()
  const anonymous = await postJson(fetch, `${publicUrl}/auth/link-social`, { provider: PROVIDER, callbackURL: `${TEST_ORIGIN}/x` }, ORIGIN)
  t.equal(anonymous.status, 401, 'no session: 401')
  await anonymous.arrayBuffer()
  // An ID token for the victim's address, to link directly.
  const none = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify({ iss: idp.issuer, aud: idp.clientId, sub: victimAtIdp.login, email: mallory.email, email_verified: true })).toString('base64url')}.`
  const direct = await postJson(fetch, `${publicUrl}/auth/link-social`, { provider: PROVIDER, callbackURL: `${TEST_ORIGIN}/x`, idToken: { token: none } }, { cookie: mallory.cookie, ...ORIGIN })
  t.ok(direct.status >= 400 && direct.status < 500, `a none-signed ID token to link-social: 4xx (got ${direct.status})`)
  await direct.arrayBuffer()
  t.same(await providersOf(mallory.userId), ['credential'], 'never linked')
})

t.test('accounts: no tokens listed; another user\'s account can be neither unlinked nor read', async (t) => {
  const alice = idpAccount()
  const aliceIn = await attempt(alice.login)
  const aliceUser = await userOf(aliceIn.cookie)
  const cookie = aliceIn.cookie ?? ''
  const { rows: [stored] } = await stack.pool.query<{ id: string, accessToken: string | null, refreshToken: string | null, idToken: string | null }>('SELECT id, "accessToken", "refreshToken", "idToken" FROM account WHERE "userId" = $1', [aliceUser?.id])
  t.ok(stored.idToken ?? stored.accessToken, 'the provider\'s tokens are stored')

  const listed = await fetch(`${publicUrl}/auth/list-accounts`, { headers: { cookie } })
  t.equal(listed.status, 200)
  const text = await listed.text()
  for (const key of ['accessToken', 'refreshToken', 'idToken', 'password', 'access_token', 'id_token']) t.notOk(text.includes(`"${key}"`), `list-accounts has no ${key}`)
  for (const value of [stored.accessToken, stored.refreshToken, stored.idToken]) if (value !== null) t.notOk(text.includes(value), 'nor a stored token\'s value')
  const aliceAccounts = JSON.parse(text) as Array<{ id: string, providerId: string, accountId: string }>
  t.same(aliceAccounts.map((account) => account.providerId), [PROVIDER])

  const bob = await signUp(stack)
  const bobHeaders = { cookie: bob.cookie, ...ORIGIN }
  for (const body of [{ accountId: stored.id }, { accountId: stored.id, userId: aliceUser?.id }, { accountId: aliceAccounts[0].accountId, providerId: PROVIDER }, { accountId: { $ne: '' } }, { accountId: [stored.id] }]) {
    const response = await postJson(fetch, `${publicUrl}/auth/unlink-account`, body, bobHeaders)
    t.ok(response.status >= 400 && response.status < 500, `Bob unlinks Alice's account ${JSON.stringify(body)}: 4xx (got ${response.status})`)
    await response.arrayBuffer()
  }
  const anonymous = await postJson(fetch, `${publicUrl}/auth/unlink-account`, { accountId: stored.id }, ORIGIN)
  t.equal(anonymous.status, 401, 'without a session: 401')
  await anonymous.arrayBuffer()
  t.same(await providersOf(aliceUser?.id ?? ''), [PROVIDER], 'Alice\'s account is still linked')

  // Her provider tokens, through the routes that hand them to their owner.
  const asks: Array<[string, RequestInit]> = [
    [`/auth/account-info?accountId=${encodeURIComponent(stored.id)}`, { headers: { cookie: bob.cookie } }],
    [`/auth/account-info?accountId=${encodeURIComponent(stored.id)}&userId=${encodeURIComponent(aliceUser?.id ?? '')}`, { headers: { cookie: bob.cookie } }],
    [`/auth/account-info?accountId=${encodeURIComponent(stored.id)}&userId=${encodeURIComponent(aliceUser?.id ?? '')}`, {}],
    ['/auth/get-access-token', { method: 'POST', headers: { 'content-type': 'application/json', ...bobHeaders }, body: JSON.stringify({ providerId: PROVIDER, userId: aliceUser?.id }) }],
    ['/auth/get-access-token', { method: 'POST', headers: { 'content-type': 'application/json', ...bobHeaders }, body: JSON.stringify({ providerId: PROVIDER, accountId: stored.id, userId: aliceUser?.id }) }],
    ['/auth/get-access-token', { method: 'POST', headers: { 'content-type': 'application/json', ...ORIGIN }, body: JSON.stringify({ providerId: PROVIDER, userId: aliceUser?.id }) }],
    ['/auth/refresh-token', { method: 'POST', headers: { 'content-type': 'application/json', ...bobHeaders }, body: JSON.stringify({ providerId: PROVIDER, userId: aliceUser?.id }) }],
    ['/auth/refresh-token', { method: 'POST', headers: { 'content-type': 'application/json', ...ORIGIN }, body: JSON.stringify({ providerId: PROVIDER, accountId: stored.id, userId: aliceUser?.id }) }]
  ]
  for (const [path, init] of asks) {
    const response = await fetch(`${publicUrl}${path}`, init)
    const answer = await response.text()
    t.ok(response.status >= 400 && response.status < 500, `${init.method ?? 'GET'} ${path} as Bob or nobody: 4xx (got ${response.status} ${answer.slice(0, 120)})`)
    for (const value of [stored.accessToken, stored.refreshToken, stored.idToken]) if (value !== null) t.notOk(answer.includes(value), 'no token of Alice\'s')
  }
  // Her own ID token is not in any answer of the session routes either.
  for (const path of ['/auth/get-session', '/auth/me']) {
    const answer = await (await fetch(`${publicUrl}${path}`, { headers: { cookie } })).text()
    if (stored.idToken !== null) t.notOk(answer.includes(stored.idToken), `${path}: no ID token`)
    t.notOk(answer.includes('"accessToken"'), `${path}: no access token`)
  }
  t.equal((await postJson(fetch, `${publicUrl}/auth/sign-in/email`, { email: bob.email, password: PASSWORD }, ORIGIN)).status, 200, 'Bob is unharmed')
})

t.test('no attempt got a 5xx, and both services still answer', async (t) => {
  // The U+3002 callbackURL above once made the callback a 500.
  t.same(serverErrors, [], 'no 5xx from the gateway in any attempt')
  const gateway = await fetch(`${publicUrl}/health`)
  t.equal(gateway.status, 200, 'the gateway is up')
  await gateway.arrayBuffer()
  const core = await fetch(`${stack.authCoreUrl}/health`)
  t.equal(core.status, 200, 'auth-core is up')
  await core.arrayBuffer()
  t.equal((await attempt(idpAccount().login)).location, `${TEST_ORIGIN}/in`, 'and an honest sign-in works')
})
