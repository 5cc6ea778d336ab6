import t from 'tap'
import { createGatewayClient } from '@auth-gateway/client'
import { postJson, startTestStack, TEST_ORIGIN, uniqueEmail } from '../../helper.ts'
import { freePort } from '../../ports.ts'
import { browserJar, signInAtIdp, startTestIdp } from '../../oidc-provider.ts'
import type { IdpAccount } from '../../oidc-provider.ts'
import { sessionCookieOf } from '../../oidc-provider.ts'
import { recordingUpstream } from '../../upstream.ts'
import { PASSWORD, signUp } from '../../readers.ts'

/*
 * Sign-in through a real OpenID Connect provider (issue 18), every step through the gateway's
 * public URL as a browser makes it: the docs page asks for the provider's URL, the provider's
 * sign-in and consent pages, the callback to the gateway, and the final redirect to the page's
 * origin with the session cookie. State, PKCE and the ID token's nonce are better-auth's to check;
 * the test tampers with them and replays the code.
 */
const PROVIDER = 'corp'
const gatewayPort = await freePort()
const publicUrl = `http://127.0.0.1:${gatewayPort}`
const idp = await startTestIdp(t, `${publicUrl}/auth/callback/${PROVIDER}`)
const rag = await recordingUpstream(t)
const stack = await startTestStack(t, {
  PORT: String(gatewayPort),
  PUBLIC_URL: publicUrl,
  OIDC_ISSUER: idp.issuer,
  OIDC_CLIENT_ID: idp.clientId,
  OIDC_CLIENT_SECRET: idp.clientSecret,
  OIDC_PROVIDER_ID: PROVIDER,
  RAG_UPSTREAM_URL: rag.url
})
t.equal(stack.url, publicUrl, 'the gateway listens on its public URL')

let logins = 0
function idpAccount (account: Partial<IdpAccount> = {}): { login: string } & IdpAccount {
  logins += 1
  const login = `person-${logins}`
  const full: IdpAccount = { email: uniqueEmail('oidc'), emailVerified: true, name: 'Corp Reader', ...account }
  idp.accounts.set(login, full)
  return { login, ...full }
}

type Browser = ReturnType<typeof browserJar>

/** From the page's "Sign in with corp" to the provider's redirect back to the gateway, checking the request to the provider. */
async function throughProvider (browser: Browser, login: string, callbackURL = `${TEST_ORIGIN}/signed-in`): Promise<string> {
  const { authorize, callback } = await signInAtIdp(browser, { gateway: publicUrl, provider: PROVIDER, login, callbackURL })
  t.equal(authorize.origin, idp.issuer, 'to the provider')
  t.equal(authorize.searchParams.get('redirect_uri'), `${publicUrl}/auth/callback/${PROVIDER}`, 'back through the gateway')
  t.equal(authorize.searchParams.get('code_challenge_method'), 'S256', 'PKCE')
  t.ok(authorize.searchParams.get('state'), 'state')
  t.ok(authorize.searchParams.get('nonce'), 'nonce')
  return callback
}


t.test('GET /auth/providers lists the configured provider, never its secret', async (t) => {
  const response = await fetch(`${publicUrl}/auth/providers`)
  t.equal(response.status, 200)
  const text = await response.text()
  t.same(JSON.parse(text), { providers: [{ id: PROVIDER, type: 'oidc' }] })
  t.notOk(text.includes(idp.clientSecret))
  t.same((await createGatewayClient({ baseURL: publicUrl }).providers()).data, { providers: [{ id: PROVIDER, type: 'oidc' }] }, 'the client asks the same')
})

t.test('a reader signs in at the provider and lands signed in on the docs site; RAG hears who asks', async (t) => {
  const browser = browserJar()
  const person = idpAccount()
  const callback = await throughProvider(browser, person.login)
  t.ok(callback.startsWith(`${publicUrl}/auth/callback/${PROVIDER}?`), 'the provider sends the reader to the gateway')
  const landed = await browser.go(callback)
  t.equal(landed.status, 302)
  t.equal(landed.headers.get('location'), `${TEST_ORIGIN}/signed-in`, 'then to the page it came from')
  const cookie = sessionCookieOf(browser)
  t.ok(cookie, 'with a session cookie on the gateway\'s origin')
  const me = await fetch(`${publicUrl}/auth/me`, { headers: { cookie: cookie ?? '' } })
  t.equal(me.status, 200)
  const { user } = await me.json() as { user: { id: string, email: string, emailVerified: boolean, name: string } }
  t.match(user, { email: person.email.toLowerCase(), emailVerified: true, name: 'Corp Reader' })
  const asked = await fetch(`${publicUrl}/api/v1/query`, { method: 'POST', headers: { cookie: cookie ?? '', 'content-type': 'application/json' }, body: '{"question":"?"}' })
  t.equal(asked.status, 200)
  await asked.arrayBuffer()
  t.equal(rag.requests.at(-1)?.headers['x-user-id'], user.id)

  // The same person again: the same account, no second one.
  const again = browserJar()
  await again.go(await throughProvider(again, person.login))
  const second = await fetch(`${publicUrl}/auth/me`, { headers: { cookie: sessionCookieOf(again) ?? '' } })
  t.equal(((await second.json()) as { user: { id: string } }).user.id, user.id, 'signed in to the same account')
})

t.test('a tampered state, a replayed code and a foreign callback URL are refused', async (t) => {
  const person = idpAccount()
  const tampered = browserJar()
  const callback = new URL(await throughProvider(tampered, person.login))
  callback.searchParams.set('state', `${callback.searchParams.get('state') ?? ''}x`)
  const refused = await tampered.go(callback.toString())
  t.ok(refused.status === 302 && (refused.headers.get('location') ?? '').includes('error='), `a tampered state: an error redirect (got ${refused.status} ${refused.headers.get('location')})`)
  t.equal(sessionCookieOf(tampered), undefined, 'and no session')

  const honest = browserJar()
  const good = await throughProvider(honest, person.login)
  await honest.go(good)
  t.ok(sessionCookieOf(honest), 'the honest sign-in works')
  const thief = browserJar()
  const replayed = await thief.go(good)
  t.ok(replayed.status === 302 && (replayed.headers.get('location') ?? '').includes('error='), `the code replayed by another browser: an error redirect (got ${replayed.status})`)
  t.equal(sessionCookieOf(thief), undefined, 'and no session')

  const foreign = await postJson(fetch, `${publicUrl}/auth/sign-in/social`, { provider: PROVIDER, callbackURL: 'https://evil.example/steal' }, { origin: TEST_ORIGIN })
  t.equal(foreign.status, 400)
  t.match(await foreign.json(), { error: 'bad_redirect' })
  const unknown = await postJson(fetch, `${publicUrl}/auth/sign-in/social`, { provider: 'nobody', callbackURL: `${TEST_ORIGIN}/x` }, { origin: TEST_ORIGIN })
  t.ok(unknown.status >= 400 && unknown.status < 500, `an unknown provider: 4xx (got ${unknown.status})`)
  await unknown.arrayBuffer()
})

t.test('an address with a password account links only when both the provider and the account have verified it', async (t) => {
  const reader = await signUp(stack)
  const unverified = browserJar()
  const stranger = idpAccount({ email: reader.email, emailVerified: false })
  const landed = await unverified.go(await throughProvider(unverified, stranger.login))
  t.ok((landed.headers.get('location') ?? '').includes('error='), `an unverified address: an error redirect (got ${landed.headers.get('location')})`)
  t.equal(sessionCookieOf(unverified), undefined, 'no session for the stranger')
  const { rows } = await stack.pool.query<{ provider: string }>('SELECT "providerId" AS provider FROM account WHERE "userId" = $1', [reader.userId])
  t.same(rows.map((row) => row.provider), ['credential'], 'nothing was linked')

  // Someone signed up with the address but never proved it: a provider's word does not hand them the
  // account (nor the account to the provider's user, whoever set its password).
  const verified = idpAccount({ email: reader.email, emailVerified: true })
  const early = browserJar()
  const notYet = await early.go(await throughProvider(early, verified.login))
  t.match(notYet.headers.get('location'), /error=account_not_linked/, 'an unverified local account is not linked')
  t.equal(sessionCookieOf(early), undefined)

  await stack.pool.query('UPDATE "user" SET "emailVerified" = true WHERE id = $1', [reader.userId])
  const owner = browserJar()
  const linkedIn = await owner.go(await throughProvider(owner, verified.login))
  t.equal(linkedIn.headers.get('location'), `${TEST_ORIGIN}/signed-in`, 'both verified: signed in')
  const me = await fetch(`${publicUrl}/auth/me`, { headers: { cookie: sessionCookieOf(owner) ?? '' } })
  t.equal(((await me.json()) as { user: { id: string } }).user.id, reader.userId, 'to the existing account')
  const linked = await stack.pool.query<{ provider: string }>('SELECT "providerId" AS provider FROM account WHERE "userId" = $1 ORDER BY 1', [reader.userId])
  t.same(linked.rows.map((row) => row.provider), ['corp', 'credential'])
  t.equal((await postJson(fetch, `${publicUrl}/auth/sign-in/email`, { email: reader.email, password: PASSWORD }, { origin: TEST_ORIGIN })).status, 200, 'the password still signs in')

  // The reader lists the ways to sign in, and unlinks the provider: the password remains.
  const cookie = sessionCookieOf(owner) ?? ''
  const accounts = await (await fetch(`${publicUrl}/auth/list-accounts`, { headers: { cookie } })).json() as Array<{ id: string, providerId: string }>
  t.same(accounts.map((account) => account.providerId).sort(), ['corp', 'credential'])
  const corp = accounts.find((account) => account.providerId === PROVIDER)
  const unlinked = await postJson(fetch, `${publicUrl}/auth/unlink-account`, { accountId: corp?.id }, { cookie, origin: TEST_ORIGIN })
  t.equal(unlinked.status, 200, 'unlinked')
  await unlinked.arrayBuffer()
  const left = await stack.pool.query<{ provider: string }>('SELECT "providerId" AS provider FROM account WHERE "userId" = $1', [reader.userId])
  t.same(left.rows.map((row) => row.provider), ['credential'])
})

t.test('the last way to sign in cannot be unlinked; the provider cannot grant a role or lift a ban', async (t) => {
  const browser = browserJar()
  const person = idpAccount({ claims: { role: 'admin', banned: false, groups: ['admins'] } })
  await browser.go(await throughProvider(browser, person.login))
  const cookie = sessionCookieOf(browser) ?? ''
  const me = await fetch(`${publicUrl}/auth/me`, { headers: { cookie } })
  const { user } = await me.json() as { user: { id: string, role: string } }
  t.equal(user.role, 'user', 'a role claim is not the gateway\'s role')
  const admin = await fetch(`${publicUrl}/auth/admin/list-users`, { headers: { cookie } })
  t.equal(admin.status, 403, 'and opens no admin route')
  await admin.arrayBuffer()
  const [only] = await (await fetch(`${publicUrl}/auth/list-accounts`, { headers: { cookie } })).json() as Array<{ id: string }>
  const refused = await postJson(fetch, `${publicUrl}/auth/unlink-account`, { accountId: only.id }, { cookie, origin: TEST_ORIGIN })
  t.ok(refused.status >= 400 && refused.status < 500, `unlinking the only account: 4xx (got ${refused.status})`)
  t.match(await refused.json(), { error: 'failed_to_unlink_last_account', message: String })
  const { rows } = await stack.pool.query('SELECT 1 FROM account WHERE "userId" = $1', [user.id])
  t.equal(rows.length, 1, 'the account is still linked')
})
