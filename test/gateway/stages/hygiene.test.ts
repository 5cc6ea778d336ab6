import t from 'tap'
import { MAX_AUTHORIZATION_BYTES, MAX_COOKIE_BYTES } from '../../../gateway/stages/hygiene.ts'
import { cookieFetch, postJson, startTestStack, TEST_ORIGIN, uniqueEmail } from '../../helper.ts'
import { rawRequest } from '../../raw-http.ts'

t.test('an oversized Cookie or Authorization header is refused with 431 before any look-up', async (t) => {
  const stack = await startTestStack(t)
  let authCoreCalls = 0
  stack.authCore.server.on('request', () => { authCoreCalls++ })

  const forged = `better-auth.session_token=${'a'.repeat(15 * 1024)}`
  for (const target of ['/auth/get-session', '/api/v1/profile', '/auth/jwt', '/health']) {
    const answer = await rawRequest(stack.url, 'GET', target, [['Cookie', forged], ['Origin', TEST_ORIGIN]])
    t.equal(answer.status, 431, `${target}: 431`)
    const body = JSON.parse(answer.body) as { error: string, message: string }
    t.equal(body.error, 'header_too_large')
    t.type(body.message, 'string')
    t.equal(answer.headers['x-content-type-options'], 'nosniff', 'security headers still set')
  }
  const split = await rawRequest(stack.url, 'GET', '/auth/get-session', [['Cookie', `a=${'b'.repeat(MAX_COOKIE_BYTES / 2)}`], ['Cookie', `c=${'d'.repeat(MAX_COOKIE_BYTES / 2)}`]])
  t.equal(split.status, 431, 'two Cookie headers count together')
  const bearer = await rawRequest(stack.url, 'GET', '/auth/jwt', [['Authorization', `Bearer ${'x'.repeat(MAX_AUTHORIZATION_BYTES)}`]])
  t.equal(bearer.status, 431, 'an oversized bearer token')
  t.equal(JSON.parse(bearer.body).error, 'header_too_large')
  t.equal(authCoreCalls, 0, 'auth-core was never called')

  const atCookieLimit = await rawRequest(stack.url, 'GET', '/auth/get-session', [['Cookie', `x=${'y'.repeat(MAX_COOKIE_BYTES - 2)}`]])
  t.equal(atCookieLimit.status, 200, 'a Cookie of exactly MAX_COOKIE_BYTES goes through')
  const atTokenLimit = await rawRequest(stack.url, 'GET', '/auth/jwt', [['Authorization', `Bearer ${'x'.repeat(MAX_AUTHORIZATION_BYTES - 7)}`]])
  t.equal(atTokenLimit.status, 401, 'an Authorization of exactly MAX_AUTHORIZATION_BYTES reaches the token check')

  const browser = cookieFetch()
  t.equal((await postJson(browser, `${stack.url}/auth/sign-up/email`, { email: uniqueEmail(), password: 'correct horse battery', name: 'Reader' })).status, 200)
  const before = authCoreCalls
  const session = await browser(`${stack.url}/auth/get-session`)
  t.equal(session.status, 200, 'a normal request still works')
  t.ok((await session.json() as { user?: unknown }).user, 'and is signed in')
  t.equal(authCoreCalls, before + 1, 'the counter sees calls to auth-core')
})
