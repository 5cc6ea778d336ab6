import t from 'tap'
import { postJson, TEST_ORIGIN } from '../../helper.ts'
import { PASSWORD, signUp } from '../../readers.ts'
import { stackWithUpstreams } from '../../upstream.ts'
import { deviceOf } from '../../../gateway/sessions/user-agent.ts'

/*
 * A reader's sessions through the gateway: where they are signed in (the address a trusted proxy
 * named, the browser and OS of the user agent, which one is this one), and signing one out while
 * the others stay. No session token ever reaches the page.
 */

const PROXY = '127.0.0.1'
const { stack } = await stackWithUpstreams(t, { TRUST_PROXY: PROXY })
const FIREFOX_LINUX = 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0'
const SAFARI_IPHONE = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1'

interface SessionView { id: string, ipAddress: string | null, browser: string | null, os: string | null, current: boolean, createdAt: string, lastActiveAt: string }

const listSessions = async (cookie: string): Promise<SessionView[]> => {
  const response = await fetch(`${stack.url}/api/v1/sessions`, { headers: { cookie } })
  t.equal(response.status, 200)
  const text = await response.text()
  t.notMatch(text, /"token"/, 'no session token in the answer')
  return (JSON.parse(text) as { sessions: SessionView[] }).sessions
}

t.test('deviceOf: browser and OS families of common user agents', async (t) => {
  t.same(deviceOf(FIREFOX_LINUX), { browser: 'Firefox 128', os: 'Linux' })
  t.same(deviceOf(SAFARI_IPHONE), { browser: 'Safari 17', os: 'iOS' })
  t.same(deviceOf('Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0'), { browser: 'Edge 131', os: 'Windows' })
  t.same(deviceOf('Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36'), { browser: 'Chrome 131', os: 'macOS' })
  t.same(deviceOf('Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36'), { browser: 'Chrome 131', os: 'Android' })
  t.same(deviceOf('curl/8.5.0'), { browser: 'curl 8', os: null })
  t.same(deviceOf(''), { browser: null, os: null })
  t.same(deviceOf(undefined), { browser: null, os: null })
  t.same(deviceOf('x'.repeat(100_000)), { browser: null, os: null }, 'a huge header is cut, not scanned')
})

t.test('the reader\'s sessions: address through the proxy, device, the current one; one revoked, the others stay', async (t) => {
  const reader = await signUp(stack)
  const signInFrom = async (address: string, userAgent: string): Promise<string> => {
    const response = await postJson(fetch, `${stack.url}/auth/sign-in/email`, { email: reader.email, password: PASSWORD }, { origin: TEST_ORIGIN, 'x-forwarded-for': address, 'user-agent': userAgent })
    t.equal(response.status, 200)
    return (response.headers.getSetCookie().find((line) => line.includes('session_token=')) ?? '').split(';')[0]
  }
  const laptop = await signInFrom('198.51.100.7', FIREFOX_LINUX)
  const phone = await signInFrom('203.0.113.9', SAFARI_IPHONE)

  const sessions = await listSessions(laptop)
  t.equal(sessions.length, 3, 'the sign-up\'s session and two sign-ins')
  const byIp = new Map(sessions.map((s) => [s.ipAddress, s]))
  t.match(byIp.get('198.51.100.7'), { browser: 'Firefox 128', os: 'Linux', current: true }, 'the laptop, named by the proxy, is this session')
  t.match(byIp.get('203.0.113.9'), { browser: 'Safari 17', os: 'iOS', current: false }, 'the phone')
  t.equal(sessions.filter((s) => s.current).length, 1, 'one current session')

  const phoneId = byIp.get('203.0.113.9')?.id ?? ''
  const foreign = await fetch(`${stack.url}/api/v1/sessions/${phoneId}`, { method: 'DELETE', headers: { cookie: laptop, origin: 'https://evil.example' } })
  t.equal(foreign.status, 403, 'a cross-site revoke is refused')
  const revoked = await fetch(`${stack.url}/api/v1/sessions/${phoneId}`, { method: 'DELETE', headers: { cookie: laptop, origin: TEST_ORIGIN } })
  t.equal(revoked.status, 204, 'the phone signed out from the laptop')
  t.equal((await stack.gateway.inject({ method: 'GET', url: '/api/v1/profile', headers: { cookie: phone } })).statusCode, 401, 'the phone\'s next request is refused')
  t.equal((await stack.gateway.inject({ method: 'GET', url: '/api/v1/profile', headers: { cookie: laptop } })).statusCode, 200, 'the laptop stays signed in')
  t.equal((await listSessions(laptop)).length, 2, 'two left')

  const other = await signUp(stack)
  const otherId = (await listSessions(other.cookie))[0].id
  const notMine = await fetch(`${stack.url}/api/v1/sessions/${otherId}`, { method: 'DELETE', headers: { cookie: laptop, origin: TEST_ORIGIN } })
  t.equal(notMine.status, 404, 'someone else\'s session id: not found, and nothing revoked')
  t.equal((await stack.gateway.inject({ method: 'GET', url: '/api/v1/profile', headers: { cookie: other.cookie } })).statusCode, 200)
  t.equal((await fetch(`${stack.url}/api/v1/sessions/not%20an%20id`, { method: 'DELETE', headers: { cookie: laptop, origin: TEST_ORIGIN } })).status, 400, 'a malformed id is a 400')

  const { token } = (await (await fetch(`${stack.url}/auth/jwt`, { headers: { cookie: laptop } })).json()) as { token: string }
  const withBearer = await fetch(`${stack.url}/api/v1/sessions`, { headers: { authorization: `Bearer ${token}` } })
  t.equal(withBearer.status, 400, 'a bearer token names no session')
  t.match(await withBearer.json(), { error: 'session_cookie_required' })
  t.equal((await fetch(`${stack.url}/api/v1/sessions`)).status, 401, 'anonymous: 401')
})
