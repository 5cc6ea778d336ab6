import t from 'tap'
import { TOTP } from 'otpauth'
import { postJson, SECRET, JWT_TEST_SECRET, TEST_ORIGIN } from '../../helper.ts'
import { signUp, PASSWORD } from '../../readers.ts'
import type { Reader } from '../../readers.ts'
import { stackWithUpstreams } from '../../upstream.ts'
import { runScript } from '../../cli.ts'
import { rawRequest } from '../../raw-http.ts'

/*
 * Administration through the gateway: `/auth/admin/*` is `role:admin` (the gateway) and the admin
 * plugin checks again (auth-core); an admin needs two-factor sign-in (`ADMIN_REQUIRE_2FA`, default
 * on); a ban ends the user's sessions and tokens at once; every admin action is audited. The first
 * admin is made with `npm run admin -- set-role`.
 */

const { stack } = await stackWithUpstreams(t)
const base = stack.url

function cookieOf (response: Response): string {
  const line = response.headers.getSetCookie().find((cookie) => cookie.includes('session_token='))
  if (line === undefined) throw new Error(`no session cookie (${response.status})`)
  return line.split(';')[0]
}

const admin = async (path: string, cookie: string, body?: unknown): Promise<Response> => body === undefined
  ? fetch(`${base}/auth/admin/${path}`, { headers: { cookie } })
  : postJson(fetch, `${base}/auth/admin/${path}`, body, { cookie, origin: TEST_ORIGIN })
const protectedStatus = async (headers: Record<string, string>): Promise<number> => (await stack.gateway.inject({ method: 'GET', url: '/api/v1/profile', headers })).statusCode
const tokenOf = async (cookie: string): Promise<string> => ((await (await fetch(`${base}/auth/jwt`, { headers: { cookie } })).json()) as { token: string }).token
const signIn = async (email: string, password = PASSWORD): Promise<Response> => postJson(fetch, `${base}/auth/sign-in/email`, { email, password }, { origin: TEST_ORIGIN })

const cliEnv = { DATABASE_URL: stack.databaseUrl, DATA_DIR: stack.config.dataDir, BETTER_AUTH_SECRET: SECRET, JWT_SECRET: JWT_TEST_SECRET, LOG_LEVEL: 'silent' }

const reader: Reader = await signUp(stack)
const chief: Reader = await signUp(stack)

t.test('npm run admin -- set-role makes the first admin; list shows them (on the machine\'s Postgres, or the embedded one in cli/admin.test.ts)', async (t) => {
  const made = await runScript('gateway/cli/admin.ts', ['set-role', chief.email, 'admin'], cliEnv)
  t.equal(made.code, 0, made.stderr)
  t.match(made.stdout, /now has the role admin/)
  t.equal(await protectedStatus({ cookie: chief.cookie }), 401, 'their old session ended (it carried the old role)')
  const listed = await runScript('gateway/cli/admin.ts', ['list'], cliEnv)
  t.match(listed.stdout, new RegExp(`${chief.email.replace(/[.+]/g, '\\$&')}\\s+admin\\s+no 2fa`))
  t.notMatch(listed.stdout, reader.email, 'readers with the default role are not listed')
})

let adminCookie = ''
let totp: TOTP

t.test('an admin without two-factor sign-in is refused the admin routes; with TOTP allowed', async (t) => {
  const first = await signIn(chief.email)
  t.equal(first.status, 200)
  const cookie = cookieOf(first)
  const refused = await admin('list-users', cookie)
  t.equal(refused.status, 403, 'no 2FA yet')
  t.match(await refused.json(), { error: 'two_factor_required' })
  t.match(await (await fetch(`${base}/api/v1/admin/audit`, { headers: { cookie } })).json(), { error: 'two_factor_required' }, 'the audit log too')

  const enabled = await postJson(fetch, `${base}/auth/two-factor/enable`, { password: PASSWORD }, { cookie, origin: TEST_ORIGIN })
  t.equal(enabled.status, 200)
  const { totpURI, backupCodes } = await enabled.json() as { totpURI: string, backupCodes: string[] }
  t.match(totpURI, /^otpauth:\/\/totp\/auth-gateway:/, 'a QR-ready otpauth:// URI')
  t.ok(backupCodes.length >= 5, 'and backup codes')
  const secret = new URL(totpURI).searchParams.get('secret') ?? ''
  totp = new TOTP({ secret, digits: 6, period: 30 })
  const wrong = await postJson(fetch, `${base}/auth/two-factor/verify-totp`, { code: totp.generate() === '000000' ? '111111' : '000000' }, { cookie, origin: TEST_ORIGIN })
  t.equal(wrong.status, 401, 'a wrong code does not enrol')
  const verified = await postJson(fetch, `${base}/auth/two-factor/verify-totp`, { code: totp.generate() }, { cookie, origin: TEST_ORIGIN })
  t.equal(verified.status, 200, 'the code from a real TOTP library enrols')

  // Signing in now asks for the second factor.
  const challenged = await signIn(chief.email)
  t.match(await challenged.clone().json(), { twoFactorRedirect: true }, 'the password alone is not enough')
  const challenge = challenged.headers.getSetCookie().map((line) => line.split(';')[0]).join('; ')
  const badCode = await postJson(fetch, `${base}/auth/two-factor/verify-totp`, { code: '000000' === totp.generate() ? '123456' : '000000' }, { cookie: challenge, origin: TEST_ORIGIN })
  t.equal(badCode.status, 401, 'a wrong second factor is refused')
  // The next time step's code (accepted one step early): the enrolment used this step's.
  const code = totp.generate({ timestamp: Date.now() + 30_000 })
  const second = await postJson(fetch, `${base}/auth/two-factor/verify-totp`, { code }, { cookie: challenge, origin: TEST_ORIGIN })
  t.equal(second.status, 200, 'the TOTP code signs in')
  adminCookie = cookieOf(second)
  // The same code again, on a fresh challenge, inside its time window: refused.
  const again = (await signIn(chief.email)).headers.getSetCookie().map((line) => line.split(';')[0]).join('; ')
  const replayed = await postJson(fetch, `${base}/auth/two-factor/verify-totp`, { code }, { cookie: again, origin: TEST_ORIGIN })
  t.equal(replayed.status, 401, 'a used code does not sign in twice')
  const listed = await admin('list-users?limit=1&offset=0&searchField=email&searchValue=' + encodeURIComponent(reader.email), adminCookie)
  t.equal(listed.status, 200, 'an admin with 2FA lists users')
  t.match(await listed.json(), { users: [{ email: reader.email, role: 'user' }], total: 1 }, 'searched and paged')
})

t.test('a reader gets 403 on every admin route, whatever the spelling of the path', async (t) => {
  for (const path of ['list-users', 'ban-user', 'set-role', 'remove-user', 'impersonate-user']) {
    const response = await admin(path, reader.cookie, path === 'list-users' ? undefined : { userId: chief.userId, role: 'admin' })
    t.equal(response.status, 403, `${path}: 403`)
  }
  t.equal((await fetch(`${base}/api/v1/admin/audit`, { headers: { cookie: reader.cookie } })).status, 403, 'the audit log: 403')
  t.equal((await fetch(`${base}/auth/admin/list-users`)).status, 401, 'anonymous: 401')
  for (const target of ['/auth//admin/list-users', '/auth/./admin/list-users', '/auth/x/../admin/list-users', '/auth/%61dmin/list-users', '/auth/admin%2flist-users', '/auth/ADMIN/list-users', '/auth/admin/list-users/', '/auth/admin/list-users?x=/auth/jwt']) {
    const answer = await rawRequest(base, 'GET', target, [['Cookie', reader.cookie]])
    t.ok(answer.status >= 400 && answer.status < 500 && !answer.body.includes('"users"'), `${target}: ${answer.status}, no user list`)
  }
})

t.test('a ban ends the user\'s sessions and tokens at once; unban lets them in again', async (t) => {
  const victim = await signUp(stack)
  const token = await tokenOf(victim.cookie)
  t.equal(await protectedStatus({ cookie: victim.cookie }), 200)
  t.equal(await protectedStatus({ authorization: `Bearer ${token}` }), 200)
  const banned = await admin('ban-user', adminCookie, { userId: victim.userId, banReason: 'spam', banExpiresIn: 3600 })
  t.equal(banned.status, 200, 'banned')
  t.equal(await protectedStatus({ cookie: victim.cookie }), 401, 'the session is refused on the next request')
  t.equal(await protectedStatus({ authorization: `Bearer ${token}` }), 401, 'the token too')
  const refused = await signIn(victim.email)
  t.equal(refused.status, 403, 'a banned user cannot sign in')
  t.equal((await admin('unban-user', adminCookie, { userId: victim.userId })).status, 200, 'unbanned')
  t.equal((await signIn(victim.email)).status, 200, 'signs in again')

  const promoted = await signUp(stack)
  const promotedToken = await tokenOf(promoted.cookie)
  t.equal((await admin('set-role', adminCookie, { userId: promoted.userId, role: 'editor' })).status, 200, 'role set')
  t.equal(await protectedStatus({ authorization: `Bearer ${promotedToken}` }), 401, 'a token with the old role is refused')
  const fresh = await tokenOf(cookieOf(await signIn(promoted.email)))
  t.equal(JSON.parse(Buffer.from(fresh.split('.')[1], 'base64url').toString()).role, 'editor', 'new tokens carry the new role')
  t.equal((await admin('impersonate-user', adminCookie, { userId: promoted.userId })).status, 403, 'impersonation is off (ADMIN_IMPERSONATION)')
})

t.test('every admin action is audited, without secrets, readable by admins page by page', async (t) => {
  const changed = await signUp(stack)
  t.equal((await admin('set-user-password', adminCookie, { userId: changed.userId, newPassword: 'a password nobody should see' })).status, 200)
  const { rows } = await stack.pool.query<{ action: string, actor_id: string, target_user_id: string | null, ip: string | null, details: unknown }>('SELECT action, actor_id, target_user_id, ip, details FROM admin_audit ORDER BY id')
  t.same(rows.map((row) => row.action), ['ban-user', 'unban-user', 'set-role', 'impersonate-user', 'set-user-password'].filter((action) => action !== 'impersonate-user'), 'one row per change, none for reads or refusals')
  t.ok(rows.every((row) => row.actor_id === chief.userId && row.ip === '127.0.0.1'), 'who and from where')
  t.match(rows[0], { target_user_id: /./, details: { banReason: 'spam', banExpiresIn: 3600 } })
  t.notMatch(JSON.stringify(rows), /a password nobody should see/, 'no password in the log')

  const first = await (await fetch(`${base}/api/v1/admin/audit?limit=2`, { headers: { cookie: adminCookie } })).json() as { entries: Array<{ id: string, action: string }>, next: string | null }
  t.same(first.entries.map((entry) => entry.action), ['set-user-password', 'set-role'], 'newest first')
  t.type(first.next, 'string')
  const rest = await (await fetch(`${base}/api/v1/admin/audit?limit=2&before=${first.next ?? ''}`, { headers: { cookie: adminCookie } })).json() as { entries: Array<{ action: string }>, next: string | null }
  t.same(rest.entries.map((entry) => entry.action), ['unban-user', 'ban-user'])
  const bad = await fetch(`${base}/api/v1/admin/audit?limit=100000`, { headers: { cookie: adminCookie } })
  t.equal(bad.status, 400, 'a page over the limit is a 400')
  t.match(await bad.json(), { error: 'validation_failed' })
})
