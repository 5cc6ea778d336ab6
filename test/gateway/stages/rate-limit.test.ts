import t from 'tap'
import { isAuthGroup } from '../../../gateway/stages/rate-limit.ts'
import type { Stack } from '../../../gateway/cli/stack.ts'
import type { Env } from '../../../shared/config.ts'
import { cookieFetch, gatewayOn, listenOn, postJson, startTestStack, TEST_ORIGIN, uniqueEmail } from '../../helper.ts'
import type { Teardown } from '../../helper.ts'
import { rawRequest } from '../../raw-http.ts'
import { PASSWORD, signUp } from '../../readers.ts'
import { recordingUpstream } from '../../upstream.ts'

const UNLISTED_ORIGIN = 'http://127.0.0.1:3000'

// One stack for the file; each test counts against a gateway of its own (budgets from zero, its own limits).
const rag = await recordingUpstream(t)
const stack = await startTestStack(t, { RAG_UPSTREAM_URL: rag.url })

/** Another gateway on the stack's database and auth-core, listening: budgets of its own, from zero. */
async function freshGateway (t: Teardown, env: Env = {}): Promise<string> {
  return listenOn(await gatewayOn(t, stack, { RAG_UPSTREAM_URL: rag.url, ...env }))
}

/** A signed-in browser whose sign-up went to auth-core directly, so it spent none of the gateway's budget. */
async function signedIn (stack: Stack): Promise<ReturnType<typeof cookieFetch>> {
  const browser = cookieFetch()
  const response = await postJson(browser, `${stack.authCoreUrl}/api/auth/sign-up/email`, { email: uniqueEmail(), password: PASSWORD, name: 'Reader' })
  if (response.status !== 200) throw new Error(`sign-up answered ${response.status}`)
  return browser
}

t.test('the auth group: every path that checks a password or sends mail', async (t) => {
  for (const path of ['/auth/sign-in/email', '/auth/sign-up/email', '/auth/change-password', '/auth/change-email', '/auth/verify-password', '/auth/delete-user', '/auth/reset-password', '/auth/reset-password/abc',
    '/auth/request-password-reset', '/auth/forget-password', '/auth/send-verification-email', '/auth/two-factor/verify-totp', '/auth/two-factor/verify-backup-code']) {
    t.ok(isAuthGroup(path), path)
  }
  for (const path of ['/auth/get-session', '/auth/sign-out', '/auth/jwt', '/auth/change-passwords', '/auth/delete-user-x', '/api/v1/query']) {
    t.notOk(isAuthGroup(path), path)
  }
})

t.test('a stolen session cannot guess the password through change-password, verify-password or delete-user', async (t) => {
  const cases: Array<[string, Record<string, string>]> = [
    ['/auth/change-password', { currentPassword: 'wrong password', newPassword: 'another long password' }],
    ['/auth/verify-password', { password: 'wrong password' }],
    ['/auth/delete-user', { password: 'wrong password' }]
  ]
  for (const [path, body] of cases) {
    const base = await freshGateway(t, { AUTH_RATE_LIMIT_MAX: '3' })
    const browser = await signedIn(stack)
    const statuses: number[] = []
    for (let i = 0; i < 4; i++) statuses.push((await postJson(browser, `${base}${path}`, body)).status)
    t.same(statuses.slice(0, 3).map((status) => status === 400 || status === 401), [true, true, true], `${path}: three wrong passwords refused by auth-core (${statuses.join(',')})`)
    t.equal(statuses[3], 429, `${path}: the fourth is rate limited`)
    t.equal((await postJson(fetch, `${base}/auth/sign-in/email`, { email: 'nobody@example.com', password: 'x' }, { origin: TEST_ORIGIN })).status, 429, `${path} shares the sign-in budget`)
  }
})

t.test('preflights are never charged: five from an unlisted origin leave the sign-in budget whole', async (t) => {
  const base = await freshGateway(t, { AUTH_RATE_LIMIT_MAX: '5' })
  const preflight = (origin: string) => rawRequest(base, 'OPTIONS', '/auth/sign-in/email', [['Origin', origin], ['Access-Control-Request-Method', 'POST'], ['Access-Control-Request-Headers', 'content-type']])
  for (let i = 0; i < 5; i++) await preflight(UNLISTED_ORIGIN)
  const signIn = () => postJson(fetch, `${base}/auth/sign-in/email`, { email: 'nobody@example.com', password: 'wrong password' }, { origin: TEST_ORIGIN })
  t.equal((await signIn()).status, 401, 'the sixth request, a real sign-in from the allowed origin, is not refused')
  for (let i = 0; i < 10; i++) await preflight(TEST_ORIGIN)
  const statuses: number[] = []
  for (let i = 0; i < 5; i++) statuses.push((await signIn()).status)
  t.same(statuses, [401, 401, 401, 401, 429], 'only the real sign-ins counted')
})

t.test('preflights are not charged against the general budget either', async (t) => {
  const base = await freshGateway(t, { RATE_LIMIT_MAX: '2' })
  for (let i = 0; i < 5; i++) {
    const answer = await rawRequest(base, 'OPTIONS', '/api/v1/query', [['Origin', i % 2 === 0 ? UNLISTED_ORIGIN : TEST_ORIGIN], ['Access-Control-Request-Method', 'POST']])
    t.not(answer.status, 429, `preflight ${i + 1}`)
  }
  const statuses: number[] = []
  for (let i = 0; i < 3; i++) statuses.push((await fetch(`${base}/health`)).status)
  t.same(statuses, [200, 200, 429], 'the budget of 2 was spent by real requests only')
})

// Raw sockets: the spellings must reach the gateway as written.
t.test('rate limits: the sixth sign-in gets 429; normalised variants and X-Forwarded-For do not help', async (t) => {
  const base = await freshGateway(t, { AUTH_RATE_LIMIT_MAX: '5' })
  const attempt = (target: string, headers: Array<[string, string]> = []) =>
    rawRequest(base, 'POST', target, [['Content-Type', 'application/json'], ['Origin', TEST_ORIGIN], ...headers], JSON.stringify({ email: 'nobody@example.com', password: 'wrong password' }))
  const variants = ['/auth/sign-in/email', '/auth/./sign-in/email', '/auth/sign-in/%2e/email', '/%61uth/sign-in/email', '/auth/signin#fragment']
  for (const target of variants) t.equal((await attempt(target)).status, 401, `${target} reaches sign-in and counts`)
  const sixth = await attempt('/auth/sign-in/email', [['X-Forwarded-For', '198.51.100.1']])
  t.equal(sixth.status, 429)
  t.ok(Number(sixth.headers['retry-after']) > 0, 'Retry-After')
  t.equal(JSON.parse(sixth.body).error, 'rate_limited')
  t.equal((await attempt('/auth/sign-up/email', [['X-Forwarded-For', '198.51.100.2']])).status, 429, 'sign-up is in the same group')
  t.equal((await fetch(`${base}/auth/get-session`)).status, 200, 'other auth routes are not in the group')
})

t.test('rate limits with TRUST_PROXY: the forwarded client address is the key', async (t) => {
  const gateway = await gatewayOn(t, stack, { AUTH_RATE_LIMIT_MAX: '1', TRUST_PROXY: '127.0.0.1' })
  const attempt = async (ip: string) => (await gateway.inject({ method: 'POST', url: '/auth/sign-in/email', headers: { 'x-forwarded-for': ip, origin: TEST_ORIGIN }, payload: { email: 'nobody@example.com', password: 'wrong password' } })).statusCode
  t.equal(await attempt('198.51.100.1'), 401)
  t.equal(await attempt('198.51.100.1'), 429)
  t.equal(await attempt('198.51.100.2'), 401, 'another client behind the load balancer has its own budget')
})

t.test('RAG budgets: per address when anonymous, per user when signed in', async (t) => {
  const gateway = await gatewayOn(t, stack, { RAG_UPSTREAM_URL: rag.url, RAG_RATE_LIMIT_ANON: '2', RAG_RATE_LIMIT_USER: '4' })
  const query = async (headers: Record<string, string> = {}) => (await gateway.inject({ method: 'POST', url: '/api/v1/query', headers, payload: { q: 'x' } })).statusCode
  t.equal(await query(), 200)
  t.equal(await query(), 200)
  t.equal(await query(), 429, 'the third anonymous call from one address')
  const { cookie } = await signUp(stack)
  const statuses = []
  for (let i = 0; i < 5; i++) statuses.push(await query({ cookie }))
  t.same(statuses, [200, 200, 200, 200, 429], 'a signed-in reader has their own, larger budget')
})
