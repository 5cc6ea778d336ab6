import t from 'tap'
import { clientResponseHeaders, isIdentityHeader, upstreamRequestHeaders } from '../../../gateway/access/upstream-headers.ts'

const IDENTITY = ['Authorization', 'cookie', 'X-User-Id', 'X_User_Id', 'x-userid', 'X-Auth-Request-Email', 'X_AUTH_ROLE', 'X-Forwarded-For', 'x_forwarded_host', 'Forwarded', 'X-Real-IP', 'X-Original-URL']
const ORDINARY = ['content-type', 'accept', 'user-agent', 'x-request-id', 'x-use', 'x-aut', 'origin']

t.test('identity headers are recognised in any case and with underscores, the same every time', async (t) => {
  for (let round = 0; round < 3; round++) {
    for (const name of IDENTITY) t.equal(isIdentityHeader(name), true, `${name} (round ${round})`)
    for (const name of ORDINARY) t.equal(isIdentityHeader(name), false, `${name} (round ${round})`)
  }
})

t.test('the answer holds after more distinct names than the classification remembers', async (t) => {
  for (let i = 0; i < 2000; i++) isIdentityHeader(`x-random-${i}`)
  for (let i = 0; i < 2000; i += 97) t.equal(isIdentityHeader(`x-user-${i}`), true)
  for (const name of IDENTITY) t.equal(isIdentityHeader(name), true, name)
  for (const name of ORDINARY) t.equal(isIdentityHeader(name), false, name)
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
  }, { clientIp: '203.0.113.9', host: 'gateway.example', protocol: 'https', identity: { token: 'signed', userId: 'u1' } })
  t.same(headers, {
    'content-type': 'application/json',
    accept: 'application/json',
    'x-forwarded-for': '203.0.113.9',
    'x-forwarded-host': 'gateway.example',
    'x-forwarded-proto': 'https',
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
