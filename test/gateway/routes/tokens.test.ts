import t from 'tap'
import { spawnSync } from 'node:child_process'
import { Writable } from 'node:stream'
import { decodeJwt, SignJWT } from 'jose'
import { startStack } from '../../../gateway/cli/stack.ts'
import type { Stack } from '../../../gateway/cli/stack.ts'
import { REDACT_PATHS } from '../../../shared/log.ts'
import { DEFAULT_TOKEN_TTL_SECONDS, JWT_ISSUER, JwtKeys } from '../../../shared/jwt.ts'
import { cookieFetch, JWT_TEST_SECRET, postJson, startTestStack, TEST_ORIGIN, testConfig, testDatabase, uniqueEmail } from '../../helper.ts'
import { bearer, issueToken, PASSWORD, signUp, validate } from '../../readers.ts'
import type { TokenBody } from '../../readers.ts'

// Several sign-ups per stack: the per-address sign-up limit would otherwise stop the tests.
const STACK_ENV = { AUTH_RATE_LIMIT_MAX: '100', AUTH_USER_FIELDS: 'role:string:readonly tier:string' }

function base64url (value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url')
}

t.test('stateless tokens, validate-session and profile updates', async (t) => {
  const stack = await startTestStack(t, STACK_ENV)

  t.test('GET /auth/jwt: HS256, issuer, subject, user claims, custom fields and a 7-day expiry', async (t) => {
    const reader = await signUp(stack, { tier: 'gold' })
    const before = Math.floor(Date.now() / 1000)
    const response = await reader.browser(`${stack.url}/auth/jwt`)
    t.equal(response.status, 200)
    t.equal(response.headers.get('cache-control'), 'no-store')
    const { token, expiresAt } = await response.json() as TokenBody

    const verified = await new JwtKeys(JWT_TEST_SECRET).verify(token)
    t.equal(verified.iss, JWT_ISSUER)
    t.equal(verified.sub, reader.userId)
    t.equal(verified.email, reader.email)
    t.equal(verified.name, 'Token Reader')
    t.equal(verified.tier, 'gold', 'custom fields travel in the token')
    t.equal(verified.exp - verified.iat, DEFAULT_TOKEN_TTL_SECONDS, 'lives 7 days')
    t.ok(verified.iat >= before - 1 && verified.iat <= Math.floor(Date.now() / 1000) + 1)
    t.equal(new Date(expiresAt).getTime(), verified.exp * 1000, 'expiresAt is the exp claim')
    const header = JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString()) as { alg: string }
    t.equal(header.alg, 'HS256')
  })

  t.test('GET /auth/jwt is the gateway route, not the /auth/* proxy; anonymous callers get 401', async (t) => {
    const anonymous = await fetch(`${stack.url}/auth/jwt`)
    t.equal(anonymous.status, 401)
    t.equal((await anonymous.json() as { error: string }).error, 'unauthorized')
    // better-auth has no /jwt endpoint here: an answer with a token can only come from the gateway.
    const reader = await signUp(stack)
    t.type((await issueToken(stack, reader)).token, 'string')
    const proxied = await postJson(reader.browser, `${stack.url}/auth/jwt`, {})
    t.equal(proxied.status, 404, 'other methods still reach better-auth through the proxy')
  })

  t.test('a bearer token is accepted; a token minted with it never outlives it', async (t) => {
    const reader = await signUp(stack)
    const keys = new JwtKeys(JWT_TEST_SECRET)
    const short = await keys.sign(reader.userId, { email: reader.email, name: 'Token Reader' }, 120)
    const response = await fetch(`${stack.url}/auth/jwt`, { headers: bearer(short.token) })
    t.equal(response.status, 200)
    const minted = decodeJwt((await response.json() as TokenBody).token)
    t.ok(minted.exp !== undefined && minted.exp <= Math.floor(short.expiresAt.getTime() / 1000), 'expiry capped by the presented token')
    t.equal(minted.sub, reader.userId)
  })

  t.test('forged, expired and foreign tokens are refused with 401 invalid_token', async (t) => {
    const reader = await signUp(stack)
    const now = Math.floor(Date.now() / 1000)
    const claims = { email: reader.email, name: 'Token Reader' }
    const sign = async (secret: string, alg: string, change: (jwt: SignJWT) => SignJWT = (jwt) => jwt): Promise<string> =>
      change(new SignJWT(claims).setProtectedHeader({ alg, typ: 'JWT' }).setIssuer(JWT_ISSUER).setSubject(reader.userId).setIssuedAt(now).setExpirationTime(now + 3600))
        .sign(new TextEncoder().encode(secret))
    const cases: Array<[string, string]> = [
      ['another secret', await sign('another-secret-of-at-least-thirty-two-characters', 'HS256')],
      ['alg: none', `${base64url({ alg: 'none', typ: 'JWT' })}.${base64url({ ...claims, iss: JWT_ISSUER, sub: reader.userId, iat: now, exp: now + 3600 })}.`],
      ['alg: HS512 with the right secret', await sign(JWT_TEST_SECRET, 'HS512')],
      ['expired beyond the 30 s tolerance', await sign(JWT_TEST_SECRET, 'HS256', (jwt) => jwt.setIssuedAt(now - 7200).setExpirationTime(now - 60))],
      ['wrong issuer', await sign(JWT_TEST_SECRET, 'HS256', (jwt) => jwt.setIssuer('someone-else'))],
      ['tampered payload', (await sign(JWT_TEST_SECRET, 'HS256')).replace(/\.[^.]+\./, `.${base64url({ ...claims, sub: 'another-user', iss: JWT_ISSUER, iat: now, exp: now + 3600 })}.`)]
    ]
    for (const [name, token] of cases) {
      const response = await fetch(`${stack.url}/auth/jwt`, { headers: bearer(token) })
      t.equal(response.status, 401, `${name}: 401`)
      t.equal((await response.json() as { error: string }).error, 'invalid_token', `${name}: invalid_token`)
      t.same((await validate(stack.url, bearer(token))).body, { user: null }, `${name}: gateway validate-session says nobody`)
      t.same((await validate(stack.authCoreUrl, bearer(token))).body, { user: null }, `${name}: auth-core validate-session says nobody`)
    }
    const valid = await sign(JWT_TEST_SECRET, 'HS256')
    t.equal((await fetch(`${stack.url}/auth/jwt`, { headers: bearer(valid) })).status, 200, 'the control token passes')
  })

  t.test('a Python verifier using only the standard library accepts the token', async (t) => {
    const reader = await signUp(stack)
    const { token } = await issueToken(stack, reader)
    const verifier = `
import base64, hashlib, hmac, json, os, sys, time
def b64(part): return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
token, secret = os.environ["TOKEN"], os.environ["JWT_SECRET"].encode()
head, body, sig = token.split(".")
header, claims = json.loads(b64(head)), json.loads(b64(body))
assert header["alg"] == "HS256", "alg"
expected = hmac.new(secret, (head + "." + body).encode(), hashlib.sha256).digest()
assert hmac.compare_digest(expected, b64(sig)), "signature"
assert claims["iss"] == "better-auth", "issuer"
assert claims["exp"] > time.time(), "expiry"
print(json.dumps(claims))
`
    const run = (secret: string) => spawnSync('python3', ['-c', verifier], { env: { ...process.env, TOKEN: token, JWT_SECRET: secret }, encoding: 'utf8' })
    const ok = run(JWT_TEST_SECRET)
    t.equal(ok.status, 0, ok.stderr)
    const claims = JSON.parse(ok.stdout) as { sub: string, email: string }
    t.equal(claims.sub, reader.userId)
    t.equal(claims.email, reader.email)
    const wrong = run('not-the-secret-of-at-least-thirty-two-chars')
    t.not(wrong.status, 0, 'another secret fails the signature check')
    t.match(wrong.stderr, /signature/)
  })

  t.test('validate-session on the gateway and on auth-core: cookie, bearer, nothing, garbage', async (t) => {
    const reader = await signUp(stack, { tier: 'silver' })
    const { token } = await issueToken(stack, reader)
    for (const [service, url] of [['gateway', stack.url], ['auth-core', stack.authCoreUrl]] as const) {
      const byCookie = await validate(url, { cookie: reader.cookie })
      t.equal(byCookie.status, 200)
      t.equal(byCookie.body.user?.id, reader.userId, `${service}: cookie → the user`)
      t.equal(byCookie.body.user?.email, reader.email)
      t.equal(byCookie.body.user?.tier, 'silver', `${service}: custom fields`)
      t.equal(byCookie.body.session?.userId, reader.userId, `${service}: cookie → the session`)

      const byBearer = await validate(url, bearer(token))
      t.equal(byBearer.status, 200)
      t.equal(byBearer.body.user?.id, reader.userId, `${service}: bearer → the user`)
      t.equal(byBearer.body.user?.email, reader.email)
      t.equal(byBearer.body.user?.tier, 'silver')
      t.equal(byBearer.body.session, null, `${service}: a bearer token has no server session`)

      t.same(await validate(url), { status: 200, body: { user: null } }, `${service}: nothing → user null`)
      t.same(await validate(url, bearer('garbage')), { status: 200, body: { user: null } }, `${service}: garbage bearer`)
      t.same(await validate(url, { authorization: 'Basic Zm9vOmJhcg==' }), { status: 200, body: { user: null } }, `${service}: another scheme`)
      t.same(await validate(url, { cookie: 'better-auth.session_token=garbage.signature' }), { status: 200, body: { user: null } }, `${service}: garbage cookie`)
    }
    const response = await fetch(`${stack.url}/api/validate-session`)
    t.equal(response.headers.get('cache-control'), 'no-store')
  })

  t.test('revoking all sessions through the gateway refuses older bearer tokens at once', async (t) => {
    const reader = await signUp(stack)
    const { token } = await issueToken(stack, reader)
    t.equal((await fetch(`${stack.url}/auth/jwt`, { headers: bearer(token) })).status, 200, 'accepted before')

    const revoked = await postJson(reader.browser, `${stack.url}/auth/revoke-sessions`, {})
    t.equal(revoked.status, 200)

    const after = await fetch(`${stack.url}/auth/jwt`, { headers: bearer(token) })
    t.equal(after.status, 401, 'refused after revoke-sessions')
    t.equal((await after.json() as { error: string }).error, 'invalid_token')
    t.same((await validate(stack.url, bearer(token))).body, { user: null }, 'gateway validate-session refuses it')
    t.same((await validate(stack.authCoreUrl, bearer(token))).body, { user: null }, 'auth-core validate-session refuses it')
    t.equal((await fetch(`${stack.url}/auth/jwt`, { headers: { cookie: reader.cookie } })).status, 401, 'the session cookie is gone too')

    // Generations, not timestamps: a token minted right after the revocation is valid at once.
    const again = cookieFetch()
    t.equal((await postJson(again, `${stack.url}/auth/signin`, { email: reader.email, password: PASSWORD })).status, 200)
    const fresh = await (await again(`${stack.url}/auth/jwt`)).json() as TokenBody
    t.equal((await fetch(`${stack.url}/auth/jwt`, { headers: bearer(fresh.token) })).status, 200, 'a token issued after revocation works')
  })

  t.test('sign-out through the alias evicts the cached session at once', async (t) => {
    const reader = await signUp(stack)
    t.equal((await fetch(`${stack.url}/auth/jwt`, { headers: { cookie: reader.cookie } })).status, 200, 'cached now')
    t.equal((await postJson(reader.browser, `${stack.url}/auth/signout`, {})).status, 200)
    t.equal((await fetch(`${stack.url}/auth/jwt`, { headers: { cookie: reader.cookie } })).status, 401, 'no stale session from the cache')
    t.same((await validate(stack.url, { cookie: reader.cookie })).body, { user: null })
  })

  t.test('PATCH /auth/user/profile updates the user; a readonly field is refused', async (t) => {
    const reader = await signUp(stack, { tier: 'bronze' })
    const patch = async (body: unknown, headers: Record<string, string> = {}): Promise<Response> =>
      reader.browser(`${stack.url}/auth/user/profile`, { method: 'PATCH', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) })

    const updated = await patch({ name: 'Renamed Reader', tier: 'platinum' })
    t.equal(updated.status, 200, await updated.clone().text())
    t.equal(updated.headers.get('cache-control'), 'no-store')
    const session = await (await reader.browser(`${stack.url}/auth/get-session`)).json() as { user: Record<string, unknown> }
    t.equal(session.user.name, 'Renamed Reader')
    t.equal(session.user.tier, 'platinum', 'a writable custom field is updated')
    const { token } = await issueToken(stack, reader)
    t.equal(decodeJwt(token).name, 'Renamed Reader', 'new tokens carry the new name at once')

    const refused = await patch({ role: 'admin' })
    t.ok(refused.status >= 400 && refused.status < 500, `readonly field: 4xx (got ${refused.status})`)
    const body = await refused.json() as { error: string, message: string }
    t.equal(body.error, 'field_not_allowed')
    t.equal(body.message, 'role is not allowed to be set')
    const { rows } = await stack.pool.query<{ role: string | null }>('SELECT role FROM "user" WHERE id = $1', [reader.userId])
    t.equal(rows[0].role, 'user', 'no readonly value was stored: the default role stays')

    const anonymous = await fetch(`${stack.url}/auth/user/profile`, { method: 'PATCH', headers: { 'content-type': 'application/json', origin: TEST_ORIGIN }, body: '{"name":"x"}' })
    t.equal(anonymous.status, 401, 'auth-core refuses a caller without a session')
    const foreign = await patch({ name: 'Evil' }, { origin: 'http://evil.example' })
    t.equal(foreign.status, 403, 'a cookie write from a foreign origin is refused')
    const notJson = await reader.browser(`${stack.url}/auth/user/profile`, { method: 'PATCH', headers: { 'content-type': 'text/plain' }, body: 'name=x' })
    t.ok(notJson.status >= 400 && notJson.status < 500, `a text body: 4xx (got ${notJson.status})`)
    const post = await postJson(reader.browser, `${stack.url}/auth/user/profile`, { name: 'x' })
    t.equal(post.status, 404, 'only PATCH is the alias')
  })
})

t.test('sign-up, sign-in, sign-out and revoke-sessions are logged as events without credentials', async (t) => {
  const lines: string[] = []
  const stream = new Writable({ write (chunk: Buffer, _encoding, done) { lines.push(...chunk.toString('utf8').split('\n').filter((l) => l !== '')); done() } })
  const config = testConfig(t, { ...STACK_ENV, DATABASE_URL: await testDatabase(t), LOG_LEVEL: 'info' })
  const stack = await startStack(config, { logger: { level: 'info', stream, redact: { paths: [...REDACT_PATHS], censor: '[redacted]' } } })
  t.teardown(() => stack.close())

  const reader = await signUp(stack)
  const { token } = await issueToken(stack, reader)
  t.equal((await postJson(reader.browser, `${stack.url}/auth/signout`, {})).status, 200)
  t.equal((await postJson(reader.browser, `${stack.url}/auth/signin`, { email: reader.email, password: 'not the password' })).status, 401)
  t.equal((await postJson(reader.browser, `${stack.url}/auth/signin`, { email: reader.email, password: PASSWORD })).status, 200)
  t.equal((await postJson(reader.browser, `${stack.url}/auth/revoke-sessions`, {})).status, 200)

  const events = lines.map((line) => JSON.parse(line) as Record<string, unknown>).filter((entry) => typeof entry.event === 'string')
  // Session events only: not the token or the verification mail of the sign-up.
  const summary = events.filter((e) => e.event !== 'token_issued' && e.event !== 'mail_written').map((e) => `${String(e.event)}:${String(e.ok)}`)
  t.same(summary, ['sign_up:true', 'sign_out:true', 'sign_in:false', 'sign_in:true', 'revoke_sessions:true'])
  t.equal(events.find((e) => e.event === 'revoke_sessions')?.userId, reader.userId, 'revocation names the user')
  const all = lines.join('\n')
  t.notOk(all.includes(PASSWORD), 'no password in the log')
  t.notOk(all.includes(token), 'no token in the log')
  t.notOk(all.includes(reader.cookie.split('=')[1]), 'no session cookie in the log')
})
