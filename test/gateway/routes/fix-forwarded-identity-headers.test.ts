import t from 'tap'
import { Writable } from 'node:stream'
import { startStack } from '../../../gateway/cli/stack.ts'
import { REDACT_PATHS } from '../../../shared/log.ts'
import { startTestStack, testConfig, testDatabase, TEST_ORIGIN } from '../../helper.ts'
import { rawRequest } from '../../raw-http.ts'
import { recordingUpstream } from '../../upstream.ts'
import { signUp } from '../../readers.ts'

/*
 * Findings: forwarded identity headers were a denylist with gaps (`Remote-User`, `X-Amzn-Oidc-Identity`,
 * `CF-Connecting-IP` … reached upstreams); a client `Keep-Alive:` or `Upgrade:` header on `/auth/*`
 * gave 502 and an error-level log.
 */

const SMUGGLED: Array<[string, string]> = [
  ['Remote-User', 'admin'],
  ['X-Forwarded-Preferred-Username', 'admin'],
  ['X-Forwarded-Groups', 'admins'],
  ['X-Forwarded-Access-Token', 'forged'],
  ['X-Forwarded-Uri', '/api/private'],
  ['X-Original-Method', 'DELETE'],
  ['X-Amzn-Oidc-Identity', 'admin'],
  ['X-Goog-Authenticated-User-Email', 'accounts.google.com:admin@example.com'],
  ['X-MS-CLIENT-PRINCIPAL-NAME', 'admin@example.com'],
  ['X-Jwt-Assertion', 'forged'],
  ['X-Id-Token', 'forged'],
  ['Impersonate-User', 'admin'],
  ['X-Client-IP', '10.0.0.1'],
  ['True-Client-IP', '10.0.0.1'],
  ['CF-Connecting-IP', '10.0.0.1'],
  ['X-Role', 'admin'],
  ['X-Groups', 'admins'],
  ['X_Role', 'admin']
]

function headerNames (rawHeaders: readonly string[]): string[] {
  return rawHeaders.filter((_, i) => i % 2 === 0).map((name) => name.toLowerCase())
}

t.test('upstreams receive only allowlisted client headers, over a raw socket, anonymous or signed in', async (t) => {
  const rag = await recordingUpstream(t)
  const app = await recordingUpstream(t)
  const stack = await startTestStack(t, { RAG_UPSTREAM_URL: rag.url, APP_UPSTREAM_URL: app.url })
  const reader = await signUp(stack)
  const sent: Array<[string, string]> = [['Content-Type', 'application/json'], ['Traceparent', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'], ...SMUGGLED]
  const cases: Array<[string, typeof rag, string, Array<[string, string]>]> = [
    ['anonymous RAG', rag, '/api/v1/query', []],
    ['signed-in RAG', rag, '/api/v1/select', [['Cookie', reader.cookie]]],
    ['signed-in app', app, '/api/private', [['Cookie', reader.cookie], ['Origin', TEST_ORIGIN]]]
  ]
  for (const [label, upstream, path, extra] of cases) {
    const answer = await rawRequest(stack.url, 'POST', path, [...sent, ...extra], '{"q":"x"}')
    t.equal(answer.status, 200, label)
    const names = headerNames(upstream.requests.at(-1)?.rawHeaders ?? [])
    for (const [name] of SMUGGLED) t.notOk(names.includes(name.toLowerCase()), `${label}: no ${name}`)
    t.ok(names.includes('traceparent'), `${label}: tracing passes`)
  }
})

t.test('Keep-Alive and Upgrade from a client on /auth/* are dropped, not a 502', async (t) => {
  const lines: string[] = []
  const stream = new Writable({ write (chunk: Buffer, _encoding, done) { lines.push(...chunk.toString('utf8').split('\n').filter((l) => l !== '')); done() } })
  const config = testConfig(t, { DATABASE_URL: await testDatabase(t), LOG_LEVEL: 'info' })
  const stack = await startStack(config, { logger: { level: 'info', stream, redact: { paths: [...REDACT_PATHS], censor: '[redacted]' } } })
  t.teardown(() => stack.close())
  const hopByHop: Array<[string, string]> = [['Keep-Alive', 'timeout=5'], ['Upgrade', 'websocket'], ['Proxy-Connection', 'keep-alive'], ['TE', 'trailers']]
  for (const header of hopByHop) {
    const answer = await rawRequest(stack.url, 'GET', '/auth/get-session', [header])
    t.equal(answer.status, 200, `${header[0]}: answered by better-auth`)
    t.equal(answer.body, 'null')
  }
  const errors = lines.map((line) => JSON.parse(line) as { level: number }).filter((entry) => entry.level >= 50)
  t.same(errors, [], 'nothing logged at error level')
})
