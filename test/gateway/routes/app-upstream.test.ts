import t from 'tap'
import { gatewayOn, startTestStack, TEST_ORIGIN } from '../../helper.ts'
import { signUp } from '../../readers.ts'
import { recordingUpstream } from '../../upstream.ts'

// One stack for the file, with a recording app upstream that answers 418 under /api/teapot.
const app = await recordingUpstream(t, (req) => req.url.startsWith('/api/teapot') ? { status: 418, body: { error: 'teapot' } } : {})
const stack = await startTestStack(t, { APP_UPSTREAM_URL: app.url })
const reader = await signUp(stack)

t.test('without APP_UPSTREAM_URL there is no app route: every other /api/* is 404', async (t) => {
  const gateway = await gatewayOn(t, stack)
  for (const cookie of [undefined, reader.cookie]) {
    const response = await gateway.inject({ method: 'GET', url: '/api/anything', headers: cookie === undefined ? {} : { cookie } })
    t.equal(response.statusCode, 404, `no app upstream: /api/anything is 404 ${cookie === undefined ? 'anonymous' : 'signed in'}`)
  }
})

t.test('anonymous callers are refused before the app upstream', async (t) => {
  const before = app.requests.length
  for (const method of ['GET', 'POST', 'DELETE']) {
    const response = await stack.gateway.inject({ method: method as 'GET' | 'POST' | 'DELETE', url: '/api/notes', headers: { origin: TEST_ORIGIN } })
    t.equal(response.statusCode, 401, `${method}: 401`)
  }
  t.equal(app.requests.length, before, 'the app upstream saw none of them')
})

t.test('a signed-in call reaches the app upstream as sent: method, path and query, body; its answer comes back', async (t) => {
  const cases: Array<[string, string | undefined, string | undefined]> = [
    ['GET', undefined, undefined],
    ['POST', 'application/json', '{"note":"x"}'],
    ['PUT', 'text/plain', 'plain text, not JSON'],
    ['PATCH', 'application/octet-stream', '\u0001\u0002binary'],
    ['DELETE', undefined, undefined]
  ]
  for (const [method, contentType, body] of cases) {
    const headers: Record<string, string> = { cookie: reader.cookie, origin: TEST_ORIGIN }
    if (contentType !== undefined) headers['content-type'] = contentType
    const response = await fetch(`${stack.url}/api/notes/7?sort=asc&tag=a%20b`, { method, headers, body })
    t.equal(response.status, 200, `${method}: 200`)
    t.same(await response.json(), { answer: 'ok', path: '/api/notes/7?sort=asc&tag=a%20b' }, `${method}: the upstream's body`)
    const seen = app.requests.at(-1)
    t.same({ method: seen?.method, url: seen?.url, body: seen?.body }, { method, url: '/api/notes/7?sort=asc&tag=a%20b', body: body ?? '' }, `${method}: received as sent`)
  }
  const teapot = await fetch(`${stack.url}/api/teapot`, { headers: { cookie: reader.cookie } })
  t.equal(teapot.status, 418, "the upstream's status is passed on")
  t.same(await teapot.json(), { error: 'teapot' })
})
