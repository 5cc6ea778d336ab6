import t from 'tap'
import { allowedHeaders, AUTH_CORE_REQUEST_HEADERS, clientResponseHeaders, UPSTREAM_REQUEST_HEADERS, upstreamRequestHeaders } from '../../../gateway/proxy/forwarded-headers.ts'

// The finding's list: names a proxy, a cloud load balancer or an upstream framework may trust as identity.
const SMUGGLED = ['remote-user', 'x-forwarded-preferred-username', 'x-forwarded-groups', 'x-forwarded-access-token', 'x-forwarded-uri', 'x-original-method', 'x-amzn-oidc-identity', 'x-goog-authenticated-user-email', 'x-ms-client-principal-name', 'x-jwt-assertion', 'x-id-token', 'impersonate-user', 'x-client-ip', 'true-client-ip', 'cf-connecting-ip', 'x-role', 'x-groups']

t.test('only allowlisted client headers reach an upstream', async (t) => {
  const client: Record<string, string> = { 'content-type': 'application/json', traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', 'x-random-header': '1', 'x-request-id': 'chosen-by-the-client' }
  for (const name of SMUGGLED) client[name] = 'admin'
  const headers = upstreamRequestHeaders(client, { clientIp: '203.0.113.9', host: 'gateway.example', protocol: 'https', identity: null, requestId: 'the-request' })
  for (const name of SMUGGLED) t.equal(headers[name], undefined, `${name} dropped`)
  t.equal(headers['x-random-header'], undefined, 'a header nobody listed is dropped too')
  t.equal(headers.traceparent, client.traceparent, 'tracing headers pass')
  t.equal(headers['content-type'], 'application/json')
  t.equal(headers['x-request-id'], 'the-request', 'the request\'s own id, not the client\'s')
  for (const name of Object.keys(headers)) t.ok(UPSTREAM_REQUEST_HEADERS.has(name) || ['x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-request-id'].includes(name), `${name} is allowed`)
})

t.test('auth-core receives its allowlist: cookie and the origin and fetch-metadata headers, no hop-by-hop', async (t) => {
  const headers = allowedHeaders({ cookie: 'a=b', origin: 'http://localhost:3000', 'sec-fetch-site': 'same-site', 'keep-alive': 'timeout=5', upgrade: 'websocket', 'remote-user': 'admin', authorization: 'Bearer x' }, AUTH_CORE_REQUEST_HEADERS)
  t.same(headers, { cookie: 'a=b', origin: 'http://localhost:3000', 'sec-fetch-site': 'same-site' })
})

t.test('an upstream receives no client identity, hop-by-hop or Connection-listed header', async (t) => {
  const headers = upstreamRequestHeaders({
    'content-type': 'application/json',
    accept: 'application/json',
    connection: 'keep-alive, x-trace',
    'x-trace': '1',
    'x-user-id': 'forged',
    x_user_id: 'forged',
    authorization: 'Bearer forged',
    cookie: 'a=b',
    'transfer-encoding': 'chunked',
    host: 'gateway.example'
  }, { clientIp: '203.0.113.9', host: 'gateway.example', protocol: 'https', identity: { token: 'signed', userId: 'u1' }, requestId: 'the-request' })
  t.same(headers, {
    'content-type': 'application/json',
    accept: 'application/json',
    'x-forwarded-for': '203.0.113.9',
    'x-forwarded-host': 'gateway.example',
    'x-forwarded-proto': 'https',
    'x-request-id': 'the-request',
    authorization: 'Bearer signed',
    'x-user-id': 'u1'
  })
})

t.test('a client receives no upstream cookie or hop-by-hop header', async (t) => {
  t.same(clientResponseHeaders({ 'content-type': 'application/json', 'set-cookie': ['a=b'], connection: 'x-secret', 'x-secret': '1', 'keep-alive': 'timeout=5', 'x-answer': '42', absent: undefined }), {
    'content-type': 'application/json',
    'x-answer': '42'
  })
})
