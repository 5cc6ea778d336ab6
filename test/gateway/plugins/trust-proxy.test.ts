import t from 'tap'
import { cookieFetch, postJson, startTestStack, TEST_ORIGIN, uniqueEmail } from '../../helper.ts'

const PASSWORD = 'correct horse battery'

interface SessionBody {
  session: { ipAddress: string | null }
}

/** Signs up through the gateway with the given `X-Forwarded-For`, then reads the IP the session recorded. */
async function sessionIp (base: string, forwardedFor: string): Promise<string | null> {
  const browser = cookieFetch()
  const signUp = await postJson(browser, `${base}/auth/sign-up/email`, { email: uniqueEmail(), password: PASSWORD, name: 'Reader' }, { 'x-forwarded-for': forwardedFor })
  if (signUp.status !== 200) throw new Error(`sign-up answered ${signUp.status}`)
  const { session } = await (await browser(`${base}/auth/get-session`, { headers: { 'x-forwarded-for': forwardedFor } })).json() as SessionBody
  return session.ipAddress
}

t.test('TRUST_PROXY=1: the client is the rightmost X-Forwarded-For entry, whatever is prepended', async (t) => {
  const stack = await startTestStack(t, { TRUST_PROXY: '1', AUTH_RATE_LIMIT_MAX: '5' })
  const attempt = (forwardedFor: string) => postJson(fetch, `${stack.url}/auth/sign-in/email`, { email: 'nobody@example.com', password: 'wrong password' }, { 'x-forwarded-for': forwardedFor, origin: TEST_ORIGIN })
  const statuses: number[] = []
  for (let i = 1; i <= 6; i++) statuses.push((await attempt(`198.51.100.${i}, 5.6.7.8`)).status)
  t.same(statuses, [401, 401, 401, 401, 401, 429], 'rotating the left entries does not reset the budget of 5.6.7.8')
  t.equal((await attempt('5.6.7.8')).status, 429, 'nor does dropping them')
  t.equal((await attempt('1.2.3.4, 5.6.7.9')).status, 401, 'another rightmost address has its own budget')
})

t.test('TRUST_PROXY=1: the session records the rightmost address, not the prepended fake', async (t) => {
  const stack = await startTestStack(t, { TRUST_PROXY: '1' })
  t.equal(await sessionIp(stack.url, '1.2.3.4, 5.6.7.8'), '5.6.7.8')
})

t.test('TRUST_PROXY=2: two hops, the client is the second entry from the right', async (t) => {
  const stack = await startTestStack(t, { TRUST_PROXY: '2' })
  t.equal(await sessionIp(stack.url, '1.2.3.4, 5.6.7.8, 10.0.0.2'), '5.6.7.8')
})

t.test('TRUST_PROXY as addresses: the client is the rightmost untrusted entry', async (t) => {
  const stack = await startTestStack(t, { TRUST_PROXY: '127.0.0.1,10.0.0.0/8,::1' })
  t.equal(await sessionIp(stack.url, '1.2.3.4, 203.0.113.9, 10.1.2.3'), '203.0.113.9', 'the 10/8 hop is skipped, the fake on the left is not reached')
  t.equal(await sessionIp(stack.url, '10.9.9.9, 10.1.2.3'), '10.9.9.9', 'an all-trusted chain ends at its leftmost entry')
})

t.test('without TRUST_PROXY, X-Forwarded-For is ignored', async (t) => {
  const stack = await startTestStack(t)
  t.equal(await sessionIp(stack.url, '1.2.3.4, 5.6.7.8'), '127.0.0.1')
})
