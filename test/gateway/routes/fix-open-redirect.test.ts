import t from 'tap'
import { postJson, startTestStack, TEST_ORIGIN } from '../../helper.ts'
import { rawRequest } from '../../raw-http.ts'

/*
 * Finding: `GET /auth/verify-email?token=x&callbackURL=/x/..//evil.com` answered
 * `302 Location: //evil.com…` (better-auth checked the callback before dot segments were removed).
 */

interface ErrorBody { error: string, message: string }

t.test('redirect targets through /auth/* are checked after normalisation, in the query and the body', async (t) => {
  const stack = await startTestStack(t)

  for (const callback of ['/x/..//evil.com', '/.//evil.com', '/%2e%2e//evil.com', 'https://evil.com/', '/\\evil.com']) {
    const answer = await rawRequest(stack.url, 'GET', `/auth/verify-email?token=x&callbackURL=${encodeURIComponent(callback)}`)
    t.equal(answer.status, 400, `verify-email with callbackURL ${callback} refused`)
    t.equal((JSON.parse(answer.body) as ErrorBody).error, 'bad_redirect')
    t.equal(answer.headers.location, undefined, 'no Location header')
  }
  const doubled = await rawRequest(stack.url, 'GET', '/auth/verify-email?token=x&callbackURL=/ok&callbackURL=//evil.com')
  t.equal(doubled.status, 400, 'every value of a repeated parameter is checked')
  const allowed = await rawRequest(stack.url, 'GET', `/auth/verify-email?token=x&callbackURL=${encodeURIComponent(`${TEST_ORIGIN}/welcome`)}`)
  t.not(allowed.status, 400, 'an allowed origin goes on to better-auth')
  t.notMatch(allowed.headers.location ?? '', /evil/)

  const json = { 'content-type': 'application/json', origin: TEST_ORIGIN }
  for (const [path, field] of [['/auth/sign-in/email', 'callbackURL'], ['/auth/sign-up/email', 'callbackURL'], ['/auth/request-password-reset', 'redirectTo'], ['/auth/sign-in/social', 'errorCallbackURL'], ['/auth/sign-in/social', 'newUserCallbackURL']]) {
    const response = await fetch(`${stack.url}${path}`, { method: 'POST', headers: json, body: JSON.stringify({ email: 'a@example.com', password: 'x'.repeat(10), name: 'A', provider: 'github', [field]: '/x/..//evil.com' }) })
    t.equal(response.status, 400, `${path} with ${field} refused`)
    t.equal((await response.json() as ErrorBody).error, 'bad_redirect')
  }
  const variant = await fetch(`${stack.url}/auth/sign-in/email`, { method: 'POST', headers: { ...json, 'content-type': 'application/merge-patch+json' }, body: JSON.stringify({ callbackURL: '//evil.com' }) })
  t.equal(variant.status, 400, 'a JSON media type better-auth also parses is checked too')
  const bom = await fetch(`${stack.url}/auth/sign-in/email`, { method: 'POST', headers: json, body: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify({ email: 'a@example.com', password: 'x'.repeat(10), callbackURL: '/x/..//evil.com' }))]) })
  t.equal(bom.status, 400, 'a body behind a UTF-8 byte-order mark is checked too')
  t.equal((await bom.json() as ErrorBody).error, 'bad_redirect')
  const unreadable = await fetch(`${stack.url}/auth/sign-in/email`, { method: 'POST', headers: json, body: '{"callbackURL": "//evil.com"' })
  t.equal(unreadable.status, 400, 'a JSON body the gateway cannot read is not passed on unchecked')
  t.equal((await unreadable.json() as ErrorBody).error, 'invalid_json')
  const form = await fetch(`${stack.url}/auth/sign-in/email`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', origin: TEST_ORIGIN }, body: 'email=a%40example.com&callbackURL=%2F%2Fevil.com' })
  t.equal(form.status, 400, 'a form body is checked')
  const multipart = new FormData()
  multipart.set('callbackURL', '//evil.com')
  const parts = await fetch(`${stack.url}/auth/sign-in/email`, { method: 'POST', headers: { origin: TEST_ORIGIN }, body: multipart })
  t.equal(parts.status, 415, 'multipart bodies are not proxied')

  const email = `redirect-${Date.now()}@example.com`
  const signUp = await postJson(fetch, `${stack.url}/auth/sign-up/email`, { email, password: 'correct horse battery', name: 'R', callbackURL: `${TEST_ORIGIN}/welcome` }, { origin: TEST_ORIGIN })
  t.equal(signUp.status, 200, 'an allowed callback passes and the body reaches better-auth intact')
  const relative = await postJson(fetch, `${stack.url}/auth/sign-in/email`, { email, password: 'correct horse battery', callbackURL: '/docs/intro' }, { origin: TEST_ORIGIN })
  t.equal(relative.status, 200, 'a plain path on the gateway passes')
})
