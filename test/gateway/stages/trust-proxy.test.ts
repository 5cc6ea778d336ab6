import t from 'tap'
import { forwardedHeaders } from '../../../gateway/routes/auth-proxy.ts'
import type { Env } from '../../../shared/config.ts'
import { cookieFetch, gatewayOn, listenOn, postJson, startTestStack, TEST_ORIGIN, uniqueEmail } from '../../helper.ts'
import type { Teardown } from '../../helper.ts'
import { rawRequest } from '../../raw-http.ts'
import { PASSWORD } from '../../readers.ts'
import { recordingUpstream } from '../../upstream.ts'

// One stack for the file; each test runs a gateway of its own on it, with its TRUST_PROXY and budgets
// (auth-core records what the gateway tells it, so sessions show which address the gateway chose).
const stack = await startTestStack(t)

/** A listening gateway on the stack with `env`; its base URL. */
async function gateway (t: Teardown, env: Env = {}): Promise<string> {
  return listenOn(await gatewayOn(t, stack, env))
}

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
  const base = await gateway(t, { TRUST_PROXY: '1', AUTH_RATE_LIMIT_MAX: '5' })
  const attempt = (forwardedFor: string) => postJson(fetch, `${base}/auth/sign-in/email`, { email: 'nobody@example.com', password: 'wrong password' }, { 'x-forwarded-for': forwardedFor, origin: TEST_ORIGIN })
  const statuses: number[] = []
  for (let i = 1; i <= 6; i++) statuses.push((await attempt(`198.51.100.${i}, 5.6.7.8`)).status)
  t.same(statuses, [401, 401, 401, 401, 401, 429], 'rotating the left entries does not reset the budget of 5.6.7.8')
  t.equal((await attempt('5.6.7.8')).status, 429, 'nor does dropping them')
  t.equal((await attempt('1.2.3.4, 5.6.7.9')).status, 401, 'another rightmost address has its own budget')
})

t.test('TRUST_PROXY=1: the session records the rightmost address, not the prepended fake', async (t) => {
  const base = await gateway(t, { TRUST_PROXY: '1' })
  t.equal(await sessionIp(base, '1.2.3.4, 5.6.7.8'), '5.6.7.8')
})

t.test('TRUST_PROXY=2: two hops, the client is the second entry from the right', async (t) => {
  const base = await gateway(t, { TRUST_PROXY: '2' })
  t.equal(await sessionIp(base, '1.2.3.4, 5.6.7.8, 10.0.0.2'), '5.6.7.8')
})

t.test('TRUST_PROXY as addresses: the client is the rightmost untrusted entry', async (t) => {
  const base = await gateway(t, { TRUST_PROXY: '127.0.0.1,10.0.0.0/8,::1' })
  t.equal(await sessionIp(base, '1.2.3.4, 203.0.113.9, 10.1.2.3'), '203.0.113.9', 'the 10/8 hop is skipped, the fake on the left is not reached')
  t.equal(await sessionIp(base, '10.9.9.9, 10.1.2.3'), '10.9.9.9', 'an all-trusted chain ends at its leftmost entry')
})

t.test('without TRUST_PROXY, X-Forwarded-For is ignored', async (t) => {
  const base = await gateway(t)
  t.equal(await sessionIp(base, '1.2.3.4, 5.6.7.8'), '127.0.0.1')
})

/** A wrong-password sign-in over a raw socket, so the `X-Forwarded-For` value reaches the gateway exactly as written. */
function rawSignIn (base: string, forwardedFor: string) {
  return rawRequest(base, 'POST', '/auth/sign-in/email', [['Content-Type', 'application/json'], ['Origin', TEST_ORIGIN], ['X-Forwarded-For', forwardedFor]],
    JSON.stringify({ email: 'nobody@example.com', password: 'wrong password' }))
}

t.test('TRUST_PROXY=1: every spelling of one address shares its budget', async (t) => {
  const base = await gateway(t, { TRUST_PROXY: '1', AUTH_RATE_LIMIT_MAX: '3' })
  const spellings = ['::ffff:9.9.9.9', '0:0:0:0:0:ffff:909:909', '[::ffff:9.9.9.9]', '9.9.9.9:1234', '::FFFF:9.9.9.9', '9.9.9.9']
  const statuses: number[] = []
  for (const spelling of spellings) statuses.push((await rawSignIn(base, spelling)).status)
  t.same(statuses, [401, 401, 401, 429, 429, 429], `the fourth spelling of 9.9.9.9 is refused (${spellings.join(' | ')})`)
  const v6: number[] = []
  for (const spelling of ['2001:DB8::1', '2001:db8:0:0:0:0:0:1', '[2001:0db8::0001]:80', '2001:db8::1']) v6.push((await rawSignIn(base, spelling)).status)
  t.same(v6, [401, 401, 401, 429], 'upper-case and uncompressed IPv6 too')
})

t.test('TRUST_PROXY=1: a value that is not an address is the connecting peer, not a fresh budget', async (t) => {
  const base = await gateway(t, { TRUST_PROXY: '1', AUTH_RATE_LIMIT_MAX: '3' })
  const statuses: number[] = []
  for (let i = 1; i <= 4; i++) statuses.push((await rawSignIn(base, `not-an-ip-${i}`)).status)
  t.same(statuses, [401, 401, 401, 429], 'rotating garbage does not reset the budget')
  t.equal((await rawSignIn(base, '127.0.0.1')).status, 429, 'it was the budget of the socket, 127.0.0.1')
  t.equal((await rawSignIn(base, '203.0.113.7')).status, 401, 'a real address still has its own')
})

t.test('TRUST_PROXY=1: the session records the canonical address', async (t) => {
  const base = await gateway(t, { TRUST_PROXY: '1' })
  t.equal(await sessionIp(base, '1.2.3.4, ::ffff:5.6.7.8'), '5.6.7.8', 'IPv4-mapped → IPv4')
  t.equal(await sessionIp(base, 'not-an-ip'), '127.0.0.1', 'garbage → the socket')
})

t.test('the host and protocol auth-core is told are those of PUBLIC_URL', async (t) => {
  // What Fastify resolves under TRUST_PROXY from a client's X-Forwarded-For/-Host/-Proto.
  const request = { id: 'req-1', ip: '::FFFF:9.9.9.9', host: 'evil.example', protocol: 'gopher', socket: { remoteAddress: '127.0.0.1' } }
  const headers = forwardedHeaders('https://docs.example.com')(request, { 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'gopher', cookie: 'a=b' })
  t.equal(headers['x-forwarded-for'], '9.9.9.9')
  t.equal(headers['x-forwarded-host'], 'docs.example.com')
  t.equal(headers['x-forwarded-proto'], 'https')
  t.equal(headers.cookie, 'a=b')
})

t.test('TRUST_PROXY=1: a client X-Forwarded-Host/-Proto never reaches the RAG upstream', async (t) => {
  const rag = await recordingUpstream(t)
  const base = await gateway(t, { TRUST_PROXY: '1', RAG_UPSTREAM_URL: rag.url })
  const answer = await rawRequest(base, 'POST', '/api/v1/query', [['Content-Type', 'application/json'], ['Origin', TEST_ORIGIN],
    ['X-Forwarded-For', '::ffff:203.0.113.5'], ['X-Forwarded-Host', 'evil.example'], ['X-Forwarded-Proto', 'gopher']], JSON.stringify({ query: 'hello' }))
  t.equal(answer.status, 200)
  const seen = rag.requests.at(-1)
  t.equal(seen?.headers['x-forwarded-host'], 'localhost:8000', 'the host of PUBLIC_URL')
  t.equal(seen?.headers['x-forwarded-proto'], 'http', 'the protocol of PUBLIC_URL')
  t.equal(seen?.headers['x-forwarded-for'], '203.0.113.5', 'the canonical client address')
})
