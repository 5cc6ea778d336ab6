import t from 'tap'
import { startTestStack, TEST_ORIGIN } from '../../helper.ts'
import { rawRequest } from '../../raw-http.ts'
import { signUp } from '../../readers.ts'
import { recordingUpstream } from '../../upstream.ts'

// Issue 14, finding 4: `DELETE /api/v1/profile` with `Content-Type: application/json` and no body
// (what many fetch wrappers and HTTP clients send by default) answered 400 "Body cannot be empty…".
const app = await recordingUpstream(t)
const stack = await startTestStack(t, { APP_UPSTREAM_URL: app.url })
const reader = await signUp(stack)
const JSON_TYPE: [string, string] = ['Content-Type', 'application/json']

t.test('a bodyless request that says Content-Type: application/json is taken where the route takes no body', async (t) => {
  const headers: Array<[string, string]> = [JSON_TYPE, ['Cookie', reader.cookie], ['Origin', TEST_ORIGIN]]
  // Both forms of "no body": Content-Length: 0 (fetch, axios) and no length at all (raw clients).
  const forms: Array<[string, Array<[string, string]>]> = [['Content-Length: 0', [['Content-Length', '0']]], ['no Content-Length', []]]
  for (const [form, extra] of forms) {
    const deleted = await rawRequest(stack.url, 'DELETE', '/api/v1/profile', [...headers, ...extra])
    t.equal(deleted.status, 204, `DELETE /api/v1/profile, ${form}: 204 (${deleted.body})`)
  }
  const fetched = await reader.browser(`${stack.url}/api/v1/profile`, { method: 'DELETE', headers: { 'content-type': 'application/json' } })
  t.equal(fetched.status, 204, 'the same through fetch')

  const before = app.requests.length
  const proxied = await rawRequest(stack.url, 'DELETE', '/api/notes/7', [...headers, ['Content-Length', '0']])
  t.equal(proxied.status, 200, 'an app-upstream DELETE the same way')
  t.same({ method: app.requests.at(-1)?.method, body: app.requests.at(-1)?.body, count: app.requests.length - before }, { method: 'DELETE', body: '', count: 1 }, 'reaches the upstream without a body')
})

t.test('a route that takes a body still refuses an empty one, with its own 400', async (t) => {
  const empty = await reader.browser(`${stack.url}/api/v1/profile`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '' })
  t.equal(empty.status, 400)
  t.equal((await empty.json() as { error: string }).error, 'validation_failed', 'the body is required by the schema')

  const query = await fetch(`${stack.url}/api/v1/query`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '' })
  t.equal(query.status, 400)
  t.equal((await query.json() as { error: string }).error, 'invalid_json', 'a RAG question without a body')

  const malformed = await reader.browser(`${stack.url}/api/v1/profile`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"consentGiven":' })
  t.equal(malformed.status, 400)
  t.equal((await malformed.json() as { error: string }).error, 'invalid_json', 'malformed JSON is still refused')
  const poisoned = await reader.browser(`${stack.url}/api/v1/profile`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"__proto__":{"consentGiven":true}}' })
  t.equal(poisoned.status, 400, 'and a prototype-poisoning body, as Fastify\'s own parser does')
})
