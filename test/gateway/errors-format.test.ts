import t from 'tap'
import type { Test } from 'tap'
import { startTestStack, TEST_ORIGIN } from '../helper.ts'
import { rawRequest } from '../raw-http.ts'
import type { RawResponse } from '../raw-http.ts'

const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'x-permitted-cross-domain-policies': 'none',
  'x-dns-prefetch-control': 'off'
}

function assertFormat (t: Test, response: RawResponse, status: number, error: string): { error: string, message: string } {
  t.equal(response.status, status, `status ${status}`)
  t.match(response.headers['content-type'] ?? '', /^application\/json/, 'JSON')
  let body: { error: string, message: string } = { error: '', message: '' }
  try {
    body = JSON.parse(response.body) as { error: string, message: string }
  } catch {
    t.fail(`the body is JSON: ${response.body}`)
  }
  t.equal(body.error, error, `error ${error}`)
  t.type(body.message, 'string')
  t.ok(body.message.length > 0, 'a sentence')
  t.same(Object.keys(body).sort(), ['error', 'message', 'requestId'], 'nothing else (no Fastify statusCode or code)')
  t.equal((body as { requestId?: string }).requestId, response.headers['x-request-id'], 'the request id, as in X-Request-Id')
  for (const [name, value] of Object.entries(SECURITY_HEADERS)) t.equal(response.headers[name], value, `${name}`)
  return body
}

t.test('answers given outside the routes are in the project format with the security headers', async (t) => {
  const stack = await startTestStack(t)

  t.test('a URL Fastify cannot decode: 400 bad_request, CORS for an allowed origin, the path not echoed', async (t) => {
    const response = await rawRequest(stack.url, 'GET', '/api/v1/profile%C0%AF', [['Origin', TEST_ORIGIN]])
    const body = assertFormat(t, response, 400, 'bad_request')
    t.notMatch(body.message, /profile|%C0/, 'the path is not echoed')
    t.equal(response.headers['access-control-allow-origin'], TEST_ORIGIN)
    t.equal(response.headers['access-control-allow-credentials'], 'true')
    t.match(response.headers.vary ?? '', /Origin/)

    const foreign = await rawRequest(stack.url, 'GET', '/api/v1/profile%C0%AF', [['Origin', 'http://evil.example']])
    assertFormat(t, foreign, 400, 'bad_request')
    t.equal(foreign.headers['access-control-allow-origin'], undefined, 'no grant for a foreign origin')
    t.equal(foreign.headers['access-control-allow-credentials'], undefined)
    t.match(foreign.headers.vary ?? '', /Origin/, 'Vary: Origin all the same, as @fastify/cors does')

    const bare = await rawRequest(stack.url, 'GET', '/api/v1/profile%C0%AF')
    assertFormat(t, bare, 400, 'bad_request')
    t.equal(bare.headers['access-control-allow-origin'], undefined, 'no Origin, no grant')
  })

  t.test('headers over Node\'s limit: 431 in the project format', async (t) => {
    const response = await rawRequest(stack.url, 'GET', '/health', [['X-Padding', 'a'.repeat(20_000)]])
    assertFormat(t, response, 431, 'headers_too_large')
  })

  t.test('a request Node cannot parse: 400 in the project format', async (t) => {
    const response = await rawRequest(stack.url, 'GET', '/health', [['Bad Header', 'x']])
    assertFormat(t, response, 400, 'bad_request')
  })

  t.test('a body over the limit: 413 payload_too_large through the handler', async (t) => {
    const body = JSON.stringify({ query: 'x'.repeat(20_000) })
    const response = await rawRequest(stack.url, 'POST', '/api/v1/query', [['Content-Type', 'application/json'], ['Origin', TEST_ORIGIN]], body)
    assertFormat(t, response, 413, 'payload_too_large')
    t.equal(response.headers['access-control-allow-origin'], TEST_ORIGIN)
  })

  t.test('a body that is not JSON: 415 unsupported_media_type through the handler', async (t) => {
    const response = await rawRequest(stack.url, 'POST', '/api/v1/query', [['Content-Type', 'text/xml'], ['Origin', TEST_ORIGIN]], '<query/>')
    assertFormat(t, response, 415, 'unsupported_media_type')
    t.equal(response.headers['access-control-allow-origin'], TEST_ORIGIN)
  })
})
