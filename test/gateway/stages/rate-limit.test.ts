import t from 'tap'
import { buildGateway } from '../../../gateway/app.ts'
import { isAuthGroup } from '../../../gateway/stages/rate-limit.ts'
import type { Config } from '../../../shared/config.ts'
import type { Stack } from '../../../gateway/cli/stack.ts'
import { cookieFetch, postJson, startTestStack, TEST_ORIGIN, uniqueEmail } from '../../helper.ts'
import type { Teardown } from '../../helper.ts'
import { rawRequest } from '../../raw-http.ts'

const PASSWORD = 'correct horse battery'
const UNLISTED_ORIGIN = 'http://127.0.0.1:3000'

/** Another gateway on the stack's database and auth-core: budgets of its own, from zero. */
async function freshGateway (t: Teardown, stack: Stack, overrides: Partial<Config> = {}): Promise<string> {
  const gateway = await buildGateway(Object.freeze({ ...stack.config, ...overrides }), { pool: stack.pool })
  await gateway.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => gateway.close())
  return `http://127.0.0.1:${(gateway.server.address() as { port: number }).port}`
}

/** A signed-in browser whose sign-up went to auth-core directly, so it spent none of the gateway's budget. */
async function signedIn (stack: Stack): Promise<ReturnType<typeof cookieFetch>> {
  const browser = cookieFetch()
  const response = await postJson(browser, `${stack.authCoreUrl}/api/auth/sign-up/email`, { email: uniqueEmail(), password: PASSWORD, name: 'Reader' })
  if (response.status !== 200) throw new Error(`sign-up answered ${response.status}`)
  return browser
}

t.test('the auth group: every path that checks a password or sends mail', async (t) => {
  for (const path of ['/auth/sign-in/email', '/auth/sign-up/email', '/auth/change-password', '/auth/verify-password', '/auth/delete-user', '/auth/reset-password', '/auth/reset-password/abc',
    '/auth/request-password-reset', '/auth/forget-password', '/auth/send-verification-email']) {
    t.ok(isAuthGroup(path), path)
  }
  for (const path of ['/auth/get-session', '/auth/sign-out', '/auth/jwt', '/auth/change-passwords', '/auth/delete-user-x', '/api/v1/query']) {
    t.notOk(isAuthGroup(path), path)
  }
})

t.test('a stolen session cannot guess the password through change-password, verify-password or delete-user', async (t) => {
  const stack = await startTestStack(t, { AUTH_RATE_LIMIT_MAX: '3' })
  const cases: Array<[string, Record<string, string>]> = [
    ['/auth/change-password', { currentPassword: 'wrong password', newPassword: 'another long password' }],
    ['/auth/verify-password', { password: 'wrong password' }],
    ['/auth/delete-user', { password: 'wrong password' }]
  ]
  for (const [path, body] of cases) {
    const base = await freshGateway(t, stack)
    const browser = await signedIn(stack)
    const statuses: number[] = []
    for (let i = 0; i < 4; i++) statuses.push((await postJson(browser, `${base}${path}`, body)).status)
    t.same(statuses.slice(0, 3).map((status) => status === 400 || status === 401), [true, true, true], `${path}: three wrong passwords refused by auth-core (${statuses.join(',')})`)
    t.equal(statuses[3], 429, `${path}: the fourth is rate limited`)
    t.equal((await postJson(fetch, `${base}/auth/sign-in/email`, { email: 'nobody@example.com', password: 'x' }, { origin: TEST_ORIGIN })).status, 429, `${path} shares the sign-in budget`)
  }
})

t.test('preflights are never charged: five from an unlisted origin leave the sign-in budget whole', async (t) => {
  const stack = await startTestStack(t, { AUTH_RATE_LIMIT_MAX: '5' })
  const preflight = (origin: string) => rawRequest(stack.url, 'OPTIONS', '/auth/sign-in/email', [['Origin', origin], ['Access-Control-Request-Method', 'POST'], ['Access-Control-Request-Headers', 'content-type']])
  for (let i = 0; i < 5; i++) await preflight(UNLISTED_ORIGIN)
  const signIn = () => postJson(fetch, `${stack.url}/auth/sign-in/email`, { email: 'nobody@example.com', password: 'wrong password' }, { origin: TEST_ORIGIN })
  t.equal((await signIn()).status, 401, 'the sixth request, a real sign-in from the allowed origin, is not refused')
  for (let i = 0; i < 10; i++) await preflight(TEST_ORIGIN)
  const statuses: number[] = []
  for (let i = 0; i < 5; i++) statuses.push((await signIn()).status)
  t.same(statuses, [401, 401, 401, 401, 429], 'only the real sign-ins counted')
})

t.test('preflights are not charged against the general budget either', async (t) => {
  const stack = await startTestStack(t)
  const base = await freshGateway(t, stack, { rateLimitMax: 2 })
  for (let i = 0; i < 5; i++) {
    const answer = await rawRequest(base, 'OPTIONS', '/api/v1/query', [['Origin', i % 2 === 0 ? UNLISTED_ORIGIN : TEST_ORIGIN], ['Access-Control-Request-Method', 'POST']])
    t.not(answer.status, 429, `preflight ${i + 1}`)
  }
  const statuses: number[] = []
  for (let i = 0; i < 3; i++) statuses.push((await fetch(`${base}/health`)).status)
  t.same(statuses, [200, 200, 429], 'the budget of 2 was spent by real requests only')
})
