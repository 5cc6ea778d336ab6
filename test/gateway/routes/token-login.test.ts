import t from 'tap'
import { decodeJwt } from 'jose'
import { postJson, uniqueEmail } from '../../helper.ts'
import { bearer, PASSWORD, signUp } from '../../readers.ts'
import { stackWithUpstreams } from '../../upstream.ts'

// Token clients (issue 19): fetch-only callers with no cookie jar and no Origin, as a script or a
// notebook is. login → me → RAG with identity → refresh → rotation and theft detection → logout.
const { stack, rag } = await stackWithUpstreams(t, { AUTH_RATE_LIMIT_MAX: '1000' })

interface Tokens {
  token: string
  expiresAt: string
  refreshToken: string
  refreshTokenExpiresAt: string
  user: { id: string, email: string, name: string }
}

async function post (path: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number, body: Record<string, unknown>, headers: Headers }> {
  const response = await postJson(fetch, `${stack.url}${path}`, body, headers)
  const text = await response.text()
  return { status: response.status, body: text === '' ? {} : JSON.parse(text) as Record<string, unknown>, headers: response.headers }
}

async function login (email: string, password = PASSWORD): Promise<Tokens> {
  const answer = await post('/auth/login', { email, password })
  if (answer.status !== 200) throw new Error(`login answered ${answer.status}: ${JSON.stringify(answer.body)}`)
  return answer.body as unknown as Tokens
}

async function me (token: string): Promise<number> {
  const response = await fetch(`${stack.url}/auth/me`, { headers: bearer(token) })
  await response.arrayBuffer()
  return response.status
}

async function refresh (refreshToken: string): Promise<{ status: number, body: Record<string, unknown> }> {
  return post('/auth/token/refresh', { refreshToken })
}

async function signedUpReader (): Promise<{ email: string, userId: string }> {
  const reader = await signUp(stack)
  return { email: reader.email, userId: reader.userId }
}

t.test('login: an access token and a refresh token, no cookie; the token works on protected and RAG routes', async (t) => {
  const { email, userId } = await signedUpReader()
  const answer = await post('/auth/login', { email, password: PASSWORD })
  t.equal(answer.status, 200)
  t.equal(answer.headers.get('set-cookie'), null, 'no cookie')
  t.equal(answer.headers.get('cache-control'), 'no-store')
  const tokens = answer.body as unknown as Tokens
  t.match(tokens, { token: String, refreshToken: /^[A-Za-z0-9_-]{43}$/, user: { id: userId, email } })
  const claims = decodeJwt(tokens.token)
  t.equal(claims.sub, userId)
  t.type(claims.sid, 'string', 'the token names its login')
  const life = (claims.exp ?? 0) - (claims.iat ?? 0)
  t.equal(life, 15 * 60, 'an access token lives 15 minutes')
  t.equal(new Date(tokens.expiresAt).getTime(), (claims.exp ?? 0) * 1000)
  t.ok(new Date(tokens.refreshTokenExpiresAt).getTime() > Date.now() + 29 * 24 * 3600 * 1000, 'the refresh token lives 30 days')

  const described = await fetch(`${stack.url}/auth/me`, { headers: bearer(tokens.token) })
  t.equal(described.status, 200)
  const body = await described.json() as { user: Record<string, unknown> }
  t.equal(body.user.id, userId)
  t.notOk('sid' in body.user, 'the login claim is the token\'s, not the user\'s')

  const asked = await postJson(fetch, `${stack.url}/api/v1/query`, { question: 'why?' }, bearer(tokens.token))
  t.equal(asked.status, 200)
  await asked.arrayBuffer()
  t.equal(rag.requests.at(-1)?.headers['x-user-id'], userId, 'the RAG upstream gets the identity')

  const profile = await fetch(`${stack.url}/api/v1/profile`, { headers: bearer(tokens.token) })
  t.equal(profile.status, 200, 'a session route')
  await profile.arrayBuffer()
})

t.test('the password is better-auth\'s to check: a wrong one or an unknown address is refused alike', async (t) => {
  const { email } = await signedUpReader()
  const wrong = await post('/auth/login', { email, password: 'not the password' })
  const unknown = await post('/auth/login', { email: uniqueEmail(), password: PASSWORD })
  t.equal(wrong.status, 401)
  t.equal(unknown.status, 401)
  t.same([wrong.body.error, wrong.body.message], [unknown.body.error, unknown.body.message], 'the same answer')
  t.match(wrong.body, { error: 'invalid_email_or_password', message: String })
})

t.test('bad bodies: 400 with the error body, never a 500', async (t) => {
  for (const [what, body] of [
    ['no password', { email: 'a@example.com' }],
    ['a number for the email', { email: 1, password: PASSWORD }],
    ['not an object', ['a@example.com']],
    ['a code that is no code', { email: 'a@example.com', password: PASSWORD, code: 'abc' }]
  ] as const) {
    const answer = await post('/auth/login', body)
    t.equal(answer.status, 400, what)
    t.match(answer.body, { error: String, message: String }, what)
  }
  for (const body of [{}, { refreshToken: 'short' }, { refreshToken: 'x'.repeat(43) + '=' }, { refreshToken: 42 }]) {
    const answer = await refresh(body.refreshToken as string)
    t.equal(answer.status, 400, `refresh with ${JSON.stringify(body)}`)
  }
})

t.test('refresh rotates: a new pair, the old refresh token dead, its reuse ends the whole login', async (t) => {
  const { email } = await signedUpReader()
  const first = await login(email)
  const second = await refresh(first.refreshToken)
  t.equal(second.status, 200)
  const next = second.body as unknown as Tokens
  t.not(next.refreshToken, first.refreshToken, 'a new refresh token')
  t.not(next.token, first.token, 'a new access token')
  t.equal(decodeJwt(next.token).sid, decodeJwt(first.token).sid, 'of the same login')
  t.equal(await me(next.token), 200)

  // A thief (or a replay) presents the used token: refused, and the family ends.
  const replay = await refresh(first.refreshToken)
  t.equal(replay.status, 401)
  t.match(replay.body, { error: 'invalid_refresh_token' })
  t.equal(await me(next.token), 401, 'the newest access token dies too')
  t.equal(await me(first.token), 401)
  const afterReuse = await refresh(next.refreshToken)
  t.equal(afterReuse.status, 401, 'the newest refresh token dies too')

  // Another login of the same reader is untouched.
  const other = await login(email)
  t.equal(await me(other.token), 200)
})

t.test('two refreshes of one token at once: one wins, the other is a reuse', async (t) => {
  const { email } = await signedUpReader()
  const tokens = await login(email)
  const answers = await Promise.all([refresh(tokens.refreshToken), refresh(tokens.refreshToken)])
  t.same(answers.map((answer) => answer.status).sort(), [200, 401])
  const winner = answers.find((answer) => answer.status === 200)?.body as unknown as Tokens
  t.equal(await me(winner.token), 401, 'the reuse ended the login the winner continued')
})

t.test('logout ends that login at once: its access token and refresh token', async (t) => {
  const { email } = await signedUpReader()
  const kept = await login(email)
  const tokens = await login(email)
  const out = await post('/auth/logout', undefined, bearer(tokens.token))
  t.equal(out.status, 204)
  t.equal(await me(tokens.token), 401, 'the access token is refused at once')
  t.equal((await refresh(tokens.refreshToken)).status, 401, 'so is its refresh token')
  t.equal(await me(kept.token), 200, 'another login of the reader stays')
  t.equal((await post('/auth/logout', undefined, bearer(tokens.token))).status, 204, 'again: still ended')

  const byRefresh = await login(email)
  t.equal((await post('/auth/logout', { refreshToken: byRefresh.refreshToken })).status, 204, 'with the refresh token alone')
  t.equal(await me(byRefresh.token), 401)

  t.equal((await post('/auth/logout', {})).status, 401, 'with nothing')
  t.equal((await post('/auth/logout', { refreshToken: 'A'.repeat(43) })).status, 401, 'with an unknown refresh token')
  t.equal((await post('/auth/logout', undefined, bearer('not.a.token'))).status, 401, 'with a bad token')
})

t.test('a /auth/jwt token names no login: logout says how to revoke it', async (t) => {
  const reader = await signUp(stack)
  const jwt = await (await reader.browser(`${stack.url}/auth/jwt`)).json() as { token: string }
  const out = await post('/auth/logout', undefined, bearer(jwt.token))
  t.equal(out.status, 400)
  t.match(out.body, { error: 'login_token_required' })
  t.equal(await me(jwt.token), 200, 'nothing was revoked')
})

t.test('sign out everywhere, a password change and deleting the account end token logins', async (t) => {
  const reader = await signUp(stack)
  const tokens = await login(reader.email)
  const revoked = await postJson(reader.browser, `${stack.url}/auth/revoke-sessions`, {})
  t.equal(revoked.status, 200)
  await revoked.arrayBuffer()
  t.equal(await me(tokens.token), 401, 'the access token')
  t.equal((await refresh(tokens.refreshToken)).status, 401, 'the refresh token')

  const other = await signUp(stack)
  const again = await login(other.email)
  const changed = await postJson(other.browser, `${stack.url}/auth/change-password`, { currentPassword: PASSWORD, newPassword: 'another good password', revokeOtherSessions: true })
  t.equal(changed.status, 200)
  await changed.arrayBuffer()
  t.equal((await refresh(again.refreshToken)).status, 401, 'after a password change that revokes the other sessions')

  const leaving = await signUp(stack)
  const last = await login(leaving.email)
  const deleted = await postJson(leaving.browser, `${stack.url}/auth/delete-user`, { password: PASSWORD })
  t.equal(deleted.status, 200)
  await deleted.arrayBuffer()
  t.equal(await me(last.token), 401, 'the deleted user\'s access token')
  t.equal((await refresh(last.refreshToken)).status, 401, 'and refresh token')
  const { rows } = await stack.pool.query('SELECT 1 FROM token_family WHERE user_id = $1', [leaving.userId])
  t.equal(rows.length, 0, 'the logins went with the account')
})

t.test('sign-up without Origin is a token client\'s; with Origin it stays the cookie sign-up', async (t) => {
  const email = uniqueEmail()
  const answer = await post('/auth/signup', { email, password: PASSWORD, name: 'Script' })
  t.equal(answer.status, 200)
  t.equal(answer.headers.get('set-cookie'), null)
  const tokens = answer.body as unknown as Tokens
  t.match(tokens, { token: String, refreshToken: String, user: { email } })
  t.equal(await me(tokens.token), 200)

  const browser = await post('/auth/signup', { email: uniqueEmail(), password: PASSWORD, name: 'Browser' }, { origin: 'http://localhost:3000' })
  t.equal(browser.status, 200)
  t.match(browser.headers.get('set-cookie'), /better-auth\.session_token=/, 'the cookie alias')
  t.notOk('refreshToken' in browser.body)

  const redirect = await post('/auth/signup', { email: uniqueEmail(), password: PASSWORD, name: 'Evil', callbackURL: 'https://evil.example/' })
  t.equal(redirect.status, 400, 'a foreign redirect target is refused here too')
  t.match(redirect.body, { error: 'bad_redirect' })
  const taken = await post('/auth/signup', { email, password: PASSWORD, name: 'Again' })
  t.ok(taken.status >= 400 && taken.status < 500, `an address with an account: ${taken.status}`)
})

t.test('a token login leaves no cookie session behind', async (t) => {
  const reader = await signUp(stack)
  await login(reader.email)
  await login(reader.email)
  const { rows } = await stack.pool.query<{ count: string }>('SELECT count(*) FROM session WHERE "userId" = $1', [reader.userId])
  t.equal(Number(rows[0].count), 1, 'only the browser\'s session')
})

t.test('refresh tokens are stored as digests only', async (t) => {
  const { email } = await signedUpReader()
  const tokens = await login(email)
  const { rows } = await stack.pool.query<{ hits: string }>(
    "SELECT count(*) AS hits FROM refresh_token WHERE digest = $1 OR digest LIKE '%' || $1 || '%'",
    [tokens.refreshToken]
  )
  t.equal(Number(rows[0].hits), 0, 'the token itself is nowhere in the table')
})

t.test('an expired refresh token is refused', async (t) => {
  const { email } = await signedUpReader()
  const tokens = await login(email)
  const family = decodeJwt(tokens.token).sid
  await stack.pool.query("UPDATE refresh_token SET expires_at = now() - interval '1 second' WHERE family_id = $1", [family])
  const answer = await refresh(tokens.refreshToken)
  t.equal(answer.status, 401)
  t.match(answer.body, { error: 'invalid_refresh_token' })
})
