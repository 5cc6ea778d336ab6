import t from 'tap'
import { roleFromClaim } from '../../../auth-core/plugins/sign-in-providers/index.ts'
import { TEST_ORIGIN } from '../../helper.ts'
import { browserJar, sessionCookieOf, signInAtIdp, startOidcStack } from '../../oidc-provider.ts'
import { signUp } from '../../readers.ts'

/*
 * A provider the operator trusts more (issue 18), through a real OpenID Connect provider:
 * `OIDC_ROLE_CLAIM`, whose claim decides the reader's role at each sign-in with it (a changed role
 * refuses the older bearer tokens, which carry the role), and `TRUSTED_PROVIDERS`, whose addresses
 * count as verified for linking. Without them (test/gateway/routes/oidc-sign-in.test.ts) a role
 * claim is ignored and linking needs the provider's `email_verified`.
 */
t.test('a claim\'s role names: a list or comma-separated, lower-cased, only valid names, else user', async (t) => {
  t.equal(roleFromClaim(['Editor', 'admin']), 'editor,admin')
  t.equal(roleFromClaim('admin, editor'), 'admin,editor')
  t.equal(roleFromClaim(['admin', 'admin']), 'admin')
  t.equal(roleFromClaim(['', ' ', '../x', 'a b', 7, null, 'x'.repeat(40)]), 'user', 'nothing valid: user')
  t.equal(roleFromClaim(undefined), 'user')
  t.equal(roleFromClaim({ admin: true }), 'user')
  t.equal(roleFromClaim(['reader', 'bad name']), 'reader', 'the valid ones only')
})

const PROVIDER = 'sso'
const { publicUrl, idp, stack } = await startOidcStack(t, PROVIDER, {
  OIDC_ROLE_CLAIM: 'groups',
  TRUSTED_PROVIDERS: PROVIDER,
  ADMIN_REQUIRE_2FA: 'false',
  AUTH_USER_FIELDS: 'team:string clearance:string:readonly',
  GITHUB_CLIENT_ID: 'github-client-id',
  GITHUB_CLIENT_SECRET: 'github-client-secret',
  GOOGLE_CLIENT_ID: 'google-client-id.apps.googleusercontent.com',
  GOOGLE_CLIENT_SECRET: 'google-client-secret'
})

/** Signs in at the provider; the gateway's answer to the callback and the session cookie, if any. */
async function attempt (login: string): Promise<{ location: string | null, cookie: string | undefined }> {
  const browser = browserJar()
  const { callback } = await signInAtIdp(browser, { gateway: publicUrl, provider: PROVIDER, login, callbackURL: `${TEST_ORIGIN}/in` })
  const landed = await browser.go(callback)
  await landed.arrayBuffer()
  return { location: landed.headers.get('location'), cookie: sessionCookieOf(browser) }
}

async function signIn (login: string): Promise<string> {
  const { location, cookie } = await attempt(login)
  if (cookie === undefined) throw new Error(`no session: ${location}`)
  return cookie
}

async function status (path: string, headers: Record<string, string>): Promise<number> {
  const response = await fetch(`${publicUrl}${path}`, { headers })
  await response.arrayBuffer()
  return response.status
}

t.test('the provider\'s groups are the role at each sign-in; a lost role refuses the older tokens', async (t) => {
  idp.accounts.set('grace', { email: 'grace@corp.example', emailVerified: true, name: 'Grace', claims: { groups: ['admin', 'editors'] } })
  const cookie = await signIn('grace')
  const { rows } = await stack.pool.query<{ id: string, role: string }>('SELECT id, role FROM "user" WHERE email = $1', ['grace@corp.example'])
  t.equal(rows[0].role, 'admin,editors', 'the role from the claim')
  t.equal(await status('/auth/admin/list-users', { cookie }), 200, 'an admin at the gateway')
  const token = (await (await fetch(`${publicUrl}/auth/jwt`, { headers: { cookie } })).json() as { token: string }).token
  t.equal(await status('/auth/me', { authorization: `Bearer ${token}` }), 200)

  // Grace leaves the admin group at the provider; her next sign-in there says so.
  idp.accounts.set('grace', { email: 'grace@corp.example', emailVerified: true, name: 'Grace', claims: { groups: ['editors'] } })
  const again = await signIn('grace')
  t.equal((await stack.pool.query<{ role: string }>('SELECT role FROM "user" WHERE id = $1', [rows[0].id])).rows[0].role, 'editors')
  t.equal(await status('/auth/admin/list-users', { cookie: again }), 403, 'no admin any more')
  t.equal(await status('/auth/me', { authorization: `Bearer ${token}` }), 401, 'the token minted as admin is refused')

  idp.accounts.set('grace', { email: 'grace@corp.example', emailVerified: true, name: 'Grace' })
  await signIn('grace')
  t.equal((await stack.pool.query<{ role: string }>('SELECT role FROM "user" WHERE id = $1', [rows[0].id])).rows[0].role, 'user', 'no claim: user')
})

t.test('a trusted provider links without email_verified, but only to an account that verified its address', async (t) => {
  const reader = await signUp(stack)
  idp.accounts.set('linus', { email: reader.email, emailVerified: false, name: 'Linus' })
  const early = await attempt('linus')
  t.match(early.location, /error=account_not_linked/, 'the account never verified its address: not linked')
  t.equal(early.cookie, undefined)
  await stack.pool.query('UPDATE "user" SET "emailVerified" = true WHERE id = $1', [reader.userId])
  const linked = await attempt('linus')
  t.equal(linked.location, `${TEST_ORIGIN}/in`, 'linked: the provider is trusted')
  const me = await fetch(`${publicUrl}/auth/me`, { headers: { cookie: linked.cookie ?? '' } })
  t.equal(((await me.json()) as { user: { id: string } }).user.id, reader.userId)
})

t.test('a custom field the reader may write comes from the claim of its name; a read-only one never does', async (t) => {
  idp.accounts.set('tess', { email: 'tess@corp.example', emailVerified: true, name: 'Tess', claims: { team: 'robotics', clearance: 'top' } })
  const cookie = await signIn('tess')
  const me = await fetch(`${publicUrl}/auth/me`, { headers: { cookie } })
  const { user } = await me.json() as { user: Record<string, unknown> }
  t.equal(user.team, 'robotics', 'a writable field, from its claim')
  t.not(user.clearance, 'top', 'a read-only field is not the provider\'s to set')
})

t.test('GitHub and Google by configuration: listed, and their sign-in sends the browser there with the gateway\'s callback', async (t) => {
  const listed = await (await fetch(`${publicUrl}/auth/providers`)).json() as { providers: Array<{ id: string, type: string }> }
  t.same(listed.providers, [{ id: 'github', type: 'social' }, { id: 'google', type: 'social' }, { id: PROVIDER, type: 'oidc' }])
  for (const [provider, host] of [['github', 'github.com'], ['google', 'accounts.google.com']]) {
    const started = await fetch(`${publicUrl}/auth/sign-in/social`, { method: 'POST', headers: { 'content-type': 'application/json', origin: TEST_ORIGIN }, body: JSON.stringify({ provider, callbackURL: `${TEST_ORIGIN}/in` }) })
    t.equal(started.status, 200, provider)
    const url = new URL(((await started.json()) as { url: string }).url)
    t.equal(url.host, host, `to ${host}`)
    t.equal(url.searchParams.get('redirect_uri'), `${publicUrl}/auth/callback/${provider}`, 'back through the gateway')
    t.ok(url.searchParams.get('state'), 'with a state')
    t.notOk(url.toString().includes(`${provider}-client-secret`), 'never the secret')
  }
})
