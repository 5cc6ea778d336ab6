import t from 'tap'
import { randomBytes } from 'node:crypto'
import { TOTP } from 'otpauth'
import { postJson, startTestStack, TEST_ORIGIN } from '../../helper.ts'
import { bearer, PASSWORD, signUp } from '../../readers.ts'

// Token logins and API keys against the account's rules (issue 19): two-factor sign-in, a password
// reset, bans, the sign-in budget.
const stack = await startTestStack(t, { ADMIN_REQUIRE_2FA: 'false', AUTH_RATE_LIMIT_MAX: '20' })

async function post (path: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number, body: Record<string, unknown> }> {
  const response = await postJson(fetch, `${stack.url}${path}`, body, headers)
  const text = await response.text()
  return { status: response.status, body: text === '' ? {} : JSON.parse(text) as Record<string, unknown> }
}

async function me (token: string): Promise<number> {
  const response = await fetch(`${stack.url}/auth/me`, { headers: bearer(token) })
  await response.arrayBuffer()
  return response.status
}

t.test('two-factor sign-in: the password alone is not enough, the TOTP code is', async (t) => {
  const reader = await signUp(stack)
  const enabled = await postJson(reader.browser, `${stack.url}/auth/two-factor/enable`, { password: PASSWORD })
  t.equal(enabled.status, 200)
  const { totpURI } = await enabled.json() as { totpURI: string }
  const totp = new TOTP({ secret: new URL(totpURI).searchParams.get('secret') ?? '', digits: 6, period: 30 })
  const verified = await postJson(reader.browser, `${stack.url}/auth/two-factor/verify-totp`, { code: totp.generate() })
  t.equal(verified.status, 200, 'enrolled')
  await verified.arrayBuffer()

  const challenged = await post('/auth/login', { email: reader.email, password: PASSWORD })
  t.equal(challenged.status, 401)
  t.match(challenged.body, { error: 'two_factor_code_required', message: String })
  t.notOk('token' in challenged.body)
  const current = totp.generate()
  const wrong = await post('/auth/login', { email: reader.email, password: PASSWORD, code: current === '000000' ? '111111' : '000000' })
  t.equal(wrong.status, 401, 'a wrong code')
  t.notOk('token' in wrong.body)
  // The next time step's code: the enrolment used this step's, and a code signs in once.
  const answer = await post('/auth/login', { email: reader.email, password: PASSWORD, code: totp.generate({ timestamp: Date.now() + 30_000 }) })
  t.equal(answer.status, 200, 'the code signs in')
  t.equal(await me(String(answer.body.token)), 200)
})

t.test('a ban ends the token logins at once and refuses the next', async (t) => {
  const chief = await signUp(stack)
  await stack.pool.query('UPDATE "user" SET role = \'admin\' WHERE id = $1', [chief.userId])
  const adminIn = await postJson(fetch, `${stack.url}/auth/sign-in/email`, { email: chief.email, password: PASSWORD }, { origin: TEST_ORIGIN })
  const adminCookie = (adminIn.headers.getSetCookie().find((line) => line.includes('session_token=')) ?? '').split(';')[0]
  const victim = await signUp(stack)
  const tokens = (await post('/auth/login', { email: victim.email, password: PASSWORD })).body as { token: string, refreshToken: string }
  t.equal(await me(tokens.token), 200)
  const banned = await postJson(fetch, `${stack.url}/auth/admin/ban-user`, { userId: victim.userId, banReason: 'spam' }, { cookie: adminCookie, origin: TEST_ORIGIN })
  t.equal(banned.status, 200)
  await banned.arrayBuffer()
  t.equal(await me(tokens.token), 401, 'the access token')
  t.equal((await post('/auth/token/refresh', { refreshToken: tokens.refreshToken })).status, 401, 'the refresh token')
  const again = await post('/auth/login', { email: victim.email, password: PASSWORD })
  t.equal(again.status, 403, 'a banned user cannot log in')
  t.match(again.body, { error: 'banned_user' })
})

t.test('a password reset ends the token logins and keeps the API keys; a ban ends both', async (t) => {
  const reader = await signUp(stack)
  const tokens = (await post('/auth/login', { email: reader.email, password: PASSWORD })).body as { token: string, refreshToken: string }
  const created = await postJson(reader.browser, `${stack.url}/auth/api-key/create`, { name: 'survives a reset', scope: 'api' })
  const { key } = await created.json() as { key: string }
  const withKey = async (): Promise<number> => {
    const response = await fetch(`${stack.url}/api/validate-session`, { headers: { 'x-api-key': key } })
    await response.arrayBuffer()
    return response.status
  }
  t.equal(await withKey(), 200)

  // The reset link's token, as better-auth stores it when it mails one.
  const resetToken = randomBytes(16).toString('hex')
  const context = await stack.authCore.auth.$context
  await context.internalAdapter.createVerificationValue({ identifier: `reset-password:${resetToken}`, value: reader.userId, expiresAt: new Date(Date.now() + 60_000) })
  const reset = await postJson(fetch, `${stack.url}/auth/reset-password`, { token: resetToken, newPassword: 'a brand new password' }, { origin: TEST_ORIGIN })
  t.equal(reset.status, 200)
  await reset.arrayBuffer()
  t.equal(await me(tokens.token), 401, 'the access token')
  t.match(await post('/auth/token/refresh', { refreshToken: tokens.refreshToken }), { status: 401, body: { error: 'invalid_refresh_token' } }, 'the refresh token')
  t.equal(await withKey(), 200, 'the API key is its own credential')
  t.equal((await post('/auth/login', { email: reader.email, password: 'a brand new password' })).status, 200, 'the new password logs in')

  const chief = await signUp(stack)
  await stack.pool.query('UPDATE "user" SET role = \'admin\' WHERE id = $1', [chief.userId])
  const adminIn = await postJson(chief.browser, `${stack.url}/auth/sign-in/email`, { email: chief.email, password: PASSWORD })
  await adminIn.arrayBuffer()
  const banned = await postJson(chief.browser, `${stack.url}/auth/admin/ban-user`, { userId: reader.userId })
  await banned.arrayBuffer()
  t.equal(await withKey(), 401, 'banned: the key opens nothing')
  const unbanned = await postJson(chief.browser, `${stack.url}/auth/admin/unban-user`, { userId: reader.userId })
  t.equal(unbanned.status, 200)
  await unbanned.arrayBuffer()
  t.equal(await withKey(), 200, 'the ban lifted: the key works again')
})

t.test('wrong passwords spend the sign-in budget: 429 with Retry-After', async (t) => {
  const reader = await signUp(stack)
  const statuses: number[] = []
  let retryAfter: string | null = null
  for (let attempt = 0; attempt < 25 && !statuses.includes(429); attempt++) {
    const response = await postJson(fetch, `${stack.url}/auth/login`, { email: reader.email, password: 'a wrong guess' })
    statuses.push(response.status)
    retryAfter = response.headers.get('retry-after') ?? retryAfter
    await response.arrayBuffer()
  }
  t.ok(statuses.includes(429), `limited after ${statuses.length} attempts`)
  t.ok(statuses.length <= 21, 'within AUTH_RATE_LIMIT_MAX (20) and what the sign-ups before it spent')
  t.match(retryAfter, /^\d+$/)
  const signupLimited = await post('/auth/signup', { email: 'x@example.com', password: PASSWORD, name: 'X' })
  t.equal(signupLimited.status, 429, 'token sign-up shares the budget')
})
