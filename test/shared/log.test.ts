import t from 'tap'
import { randomBytes } from 'node:crypto'
import { Writable } from 'node:stream'
import { startStack } from '../../gateway/cli/stack.ts'
import { loggerOptions, redactUrl } from '../../shared/log.ts'
import { postJson, TEST_ORIGIN, testConfig, testDatabase } from '../helper.ts'

t.test('redactUrl keeps the path and the parameter names, nothing a link carries', async (t) => {
  const cases: Array<[string, string]> = [
    ['/auth/get-session', '/auth/get-session'],
    ['/', '/'],
    ['/auth/verify-email?token=abc&callbackURL=%2Fok', '/auth/verify-email?token=[redacted]&callbackURL=[redacted]'],
    ['/auth/verify-email?token=eyJh.eyJ%3D%3D.sig%2B%2F', '/auth/verify-email?token=[redacted]'],
    ['/auth/magic-link/verify?token=a&token=b&token=', '/auth/magic-link/verify?token=[redacted]&token=[redacted]&token=[redacted]'],
    ['/auth/delete-user/callback?token=x=y=z', '/auth/delete-user/callback?token=[redacted]'],
    ['/auth/ok?flag&a=1', '/auth/ok?flag&a=[redacted]'],
    ['/auth/ok?', '/auth/ok?'],
    ['/auth/reset-password/abcDEF123?callbackURL=%2Fok', '/auth/reset-password/[redacted]?callbackURL=[redacted]'],
    ['/api/auth/reset-password/abcDEF123?callbackURL=%2Fok', '/api/auth/reset-password/[redacted]?callbackURL=[redacted]'],
    ['/auth/reset-password/abc%2Fdef', '/auth/reset-password/[redacted]'],
    ['/auth/reset-password/abc/more', '/auth/reset-password/[redacted]/more'],
    ['/auth//Reset-Password//abc', '/auth//Reset-Password//[redacted]'],
    ['/auth/reset-password?token=abc', '/auth/reset-password?token=[redacted]'],
    ['/auth/request-password-reset', '/auth/request-password-reset'],
    ['/auth/callback#access_token=abc', '/auth/callback#[redacted]'],
    ['/auth/callback?state=s#frag?token=abc', '/auth/callback?state=[redacted]#[redacted]'],
    ['http://localhost:3000/auth/reset-password/abc?x=1', 'http://localhost:3000/auth/reset-password/[redacted]?x=[redacted]']
  ]
  for (const [url, expected] of cases) t.equal(redactUrl(url), expected, url)
})

t.test('tokens in URLs do not reach the log of the gateway, the proxy or auth-core', async (t) => {
  const lines: string[] = []
  const stream = new Writable({ write (chunk: Buffer, _encoding, done) { lines.push(...chunk.toString('utf8').split('\n').filter((l) => l !== '')); done() } })
  const config = testConfig(t, { DATABASE_URL: await testDatabase(t), LOG_LEVEL: 'info' })
  const stack = await startStack(config, { logger: { ...loggerOptions('info'), stream } })
  t.teardown(() => stack.close())

  const [resetInPath, resetInQuery, verifyEmail] = [0, 1, 2].map(() => randomBytes(18).toString('base64url'))
  const reset = await fetch(`${stack.url}/auth/reset-password/${resetInPath}?callbackURL=%2Fok`, { redirect: 'manual' })
  t.ok(reset.status < 500, `reset link answered (${reset.status})`)
  const change = await postJson(fetch, `${stack.url}/auth/reset-password?token=${resetInQuery}`, { newPassword: 'x' }, { origin: TEST_ORIGIN })
  t.ok(change.status >= 400 && change.status < 500, `password change refused (${change.status})`)
  const verify = await fetch(`${stack.url}/auth/verify-email?token=${verifyEmail}`, { redirect: 'manual' })
  t.ok(verify.status < 500, `verification link answered (${verify.status})`)

  const all = lines.join('\n')
  t.notOk(all.includes(resetInPath), 'no reset token from the path in the log')
  t.notOk(all.includes(resetInQuery), 'no reset token from the query in the log')
  t.notOk(all.includes(verifyEmail), 'no verification token in the log')

  const logged = lines.map((line) => JSON.parse(line) as { msg?: string, req?: { url?: string, method?: string } })
    .filter((entry) => entry.msg === 'incoming request')
    .map((entry) => `${String(entry.req?.method)} ${String(entry.req?.url)}`)
  for (const prefix of ['/auth', '/api/auth']) {
    t.ok(logged.includes(`GET ${prefix}/reset-password/[redacted]?callbackURL=[redacted]`), `${prefix}: the reset link is logged, redacted`)
    t.ok(logged.includes(`POST ${prefix}/reset-password?token=[redacted]`), `${prefix}: the password change is logged, redacted`)
    t.ok(logged.includes(`GET ${prefix}/verify-email?token=[redacted]`), `${prefix}: the verification link is logged, redacted`)
  }
})
