import t from 'tap'
import { roleFromClaim } from '../../../auth-core/plugins/sign-in-providers/index.ts'
import { startTestStack, TEST_ORIGIN } from '../../helper.ts'
import { freePort } from '../../ports.ts'
import { browserJar, sessionCookieOf, signInAtIdp, startTestIdp } from '../../oidc-provider.ts'

/*
 * `OIDC_ROLE_CLAIM` (issue 18): the provider's claim decides the reader's role at each sign-in with
 * it, through a real OpenID Connect provider; a changed role refuses the older bearer tokens, which
 * carry the role. Without it (test/gateway/routes/oidc-sign-in.test.ts) a role claim is ignored.
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
const port = await freePort()
const publicUrl = `http://127.0.0.1:${port}`
const idp = await startTestIdp(t, `${publicUrl}/auth/callback/${PROVIDER}`)
const stack = await startTestStack(t, {
  PORT: String(port),
  PUBLIC_URL: publicUrl,
  OIDC_ISSUER: idp.issuer,
  OIDC_CLIENT_ID: idp.clientId,
  OIDC_CLIENT_SECRET: idp.clientSecret,
  OIDC_PROVIDER_ID: PROVIDER,
  OIDC_ROLE_CLAIM: 'groups',
  ADMIN_REQUIRE_2FA: 'false'
})

async function signIn (login: string): Promise<string> {
  const browser = browserJar()
  const { callback } = await signInAtIdp(browser, { gateway: publicUrl, provider: PROVIDER, login, callbackURL: `${TEST_ORIGIN}/in` })
  const landed = await browser.go(callback)
  await landed.arrayBuffer()
  const cookie = sessionCookieOf(browser)
  if (cookie === undefined) throw new Error(`no session: ${landed.status} ${landed.headers.get('location')}`)
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
