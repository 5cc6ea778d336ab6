import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { DEFAULT_RULES } from '../../../gateway/access/rules.ts'
import { loadAccessRules, parseAccessRules } from '../../../gateway/access/rules-file.ts'
import { gatewayOn, listenOn, startTestStack, tempDir, TEST_ORIGIN } from '../../helper.ts'
import { rawRequest } from '../../raw-http.ts'
import { signUp } from '../../readers.ts'
import { recordingUpstream } from '../../upstream.ts'

// ACCESS_RULES_FILE (issue 16, deliver 3): rules for the app upstream as data, checked at startup
// with the table's own test, and enforced on the paths below the `/api/*` catch-all.
const FILE = '/etc/auth-gateway/rules.json'
const parse = (rules: unknown): unknown => parseAccessRules(FILE, JSON.stringify(rules), DEFAULT_RULES)
const RULES = [
  { methods: ['GET', 'POST'], path: '/api/reports/*', access: 'role:editor' },
  { methods: ['DELETE'], path: '/api/reports/*', access: 'role:admin' },
  { methods: ['GET'], path: '/api/status', access: 'public' }
]

t.test('a valid file: its rules, frozen, beside the built-in table', async (t) => {
  const rules = parse(RULES) as Array<{ path: string, access: string }>
  t.same(rules.map((rule) => [rule.path, rule.access]), [
    ['/api/reports/*', 'role:editor'], ['/api/reports', 'role:editor'],
    ['/api/reports/*', 'role:admin'], ['/api/reports', 'role:admin'],
    ['/api/status', 'public']
  ], 'a prefix covers its bare path too')
  t.ok(Object.isFrozen(rules[0]))
  t.same(parse([]), [], 'an empty list is no extra rule')
})

t.test('each kind of bad file stops startup with a ConfigError naming the file and the entry', async (t) => {
  const cases: Array<[string, string, RegExp]> = [
    ['not JSON', '{"methods":', /must hold JSON/],
    ['not a list', '{"rules":[]}', /must hold a JSON array of rules/],
    ['an entry that is not an object', '["GET /api/x"]', /entry 0 must be an object/],
    ['an unknown field', JSON.stringify([{ ...RULES[2], role: 'admin' }]), /entry 0 has unknown field "role"/],
    ['no methods', JSON.stringify([{ ...RULES[2], methods: [] }]), /entry 0: methods must be a non-empty list/],
    ['an unknown method', JSON.stringify([{ ...RULES[2], methods: ['TRACE'] }]), /entry 0: methods must be a non-empty list of GET, POST, PUT, PATCH, DELETE, \*/],
    ['a lower-case method', JSON.stringify([{ ...RULES[2], methods: ['get'] }]), /entry 0: methods/],
    ['a repeated method', JSON.stringify([{ ...RULES[2], methods: ['GET', 'GET'] }]), /must not repeat/],
    ['"*" beside another', JSON.stringify([{ ...RULES[2], methods: ['*', 'GET'] }]), /"\*" stands alone/],
    ['a path outside /api/', JSON.stringify([{ ...RULES[2], path: '/auth/x' }]), /entry 0: path must be below \/api\//],
    ['the catch-all itself', JSON.stringify([{ ...RULES[2], path: '/api/*' }]), /entry 0: path/],
    ['a dot segment', JSON.stringify([{ ...RULES[2], path: '/api/../auth' }]), /entry 0: path/],
    ['an empty segment', JSON.stringify([{ ...RULES[2], path: '/api//x' }]), /entry 0: path/],
    ['an encoded slash', JSON.stringify([{ ...RULES[2], path: '/api/a%2Fb' }]), /entry 0: path/],
    ['a parameter', JSON.stringify([{ ...RULES[2], path: '/api/reports/:id' }]), /entry 0: path/],
    ['a star inside', JSON.stringify([{ ...RULES[2], path: '/api/*/x' }]), /entry 0: path/],
    ['an unknown access', JSON.stringify([{ ...RULES[2], access: 'admin' }]), /entry 0: access must be "public", "session" or "role:<name>"/],
    ['an empty role', JSON.stringify([{ ...RULES[2], access: 'role:' }]), /entry 0: access/],
    ['a role with capitals', JSON.stringify([{ ...RULES[2], access: 'role:Editor' }]), /entry 0: access/],
    ['a rule over a built-in route', JSON.stringify([{ methods: ['*'], path: '/api/v1/*', access: 'public' }]), /entry 0 \(\/api\/v1\/\*\) overlaps the built-in rule for \/api\/v1\/query/],
    ['a rule over the profile export', JSON.stringify([RULES[2], { methods: ['GET'], path: '/api/v1/profile/*', access: 'public' }]), /entry 1 \(\/api\/v1\/profile\/\*\) overlaps the built-in rule for \/api\/v1\/profile\/export/],
    ['a rule on a built-in route\'s parameter', JSON.stringify([{ methods: ['GET'], path: '/api/v1/sessions/abc', access: 'public' }]), /overlaps the built-in rule for \/api\/v1\/sessions\/:id/],
    ['two entries deciding the same request', JSON.stringify([RULES[0], { methods: ['GET'], path: '/api/reports/*', access: 'public' }]), /entry 0 \(GET \/api\/reports\/\*\) overlaps GET \/api\/reports\/\*: one request, two rules/],
    ['"*" and a method on one path', JSON.stringify([RULES[2], { methods: ['*'], path: '/api/status', access: 'session' }]), /overlaps \*? ?.*\/api\/status/]
  ]
  for (const [name, text, message] of cases) {
    t.throws(() => parseAccessRules(FILE, text, DEFAULT_RULES), { name: 'ConfigError', variable: 'ACCESS_RULES_FILE', message }, name)
    try {
      parseAccessRules(FILE, text, DEFAULT_RULES)
    } catch (err) {
      t.match((err as Error).message, new RegExp(`^Invalid configuration: ACCESS_RULES_FILE \\(${FILE.replaceAll('/', '\\/')}\\)`), `${name}: names the variable and the file`)
    }
  }
  t.throws(() => loadAccessRules(join(tempDir(t), 'missing.json'), DEFAULT_RULES), { name: 'ConfigError', message: /cannot be read: ENOENT/ }, 'a file that cannot be read')
})

t.test('the rules are enforced on the app upstream, by path, with raw-socket variants refused', async (t) => {
  const app = await recordingUpstream(t)
  const stack = await startTestStack(t)
  const file = join(tempDir(t), 'rules.json')
  writeFileSync(file, JSON.stringify(RULES))
  const url = await listenOn(await gatewayOn(t, stack, { APP_UPSTREAM_URL: app.url, ACCESS_RULES_FILE: file }))
  const reader = await signUp({ url })
  const editor = await signUp({ url })
  await stack.pool.query('UPDATE "user" SET role = $1 WHERE id = $2', ['editor', editor.userId])
  const call = async (path: string, cookie?: string, method = 'GET'): Promise<number> => (await fetch(`${url}${path}`, { method, headers: cookie === undefined ? {} : { cookie, origin: TEST_ORIGIN } })).status
  const forwarded = (): number => app.requests.length

  t.equal(await call('/api/status'), 200, 'a public path: no session needed')
  t.notOk(app.requests.at(-1)?.headers['x-user-id'], 'forwarded without identity')
  t.equal(await call('/api/status', reader.cookie), 200)
  t.equal(app.requests.at(-1)?.headers['x-user-id'], reader.userId, 'a signed-in caller\'s identity still goes along')
  t.equal(await call('/api/status', undefined, 'POST'), 401, 'only the listed method is public: POST falls to the catch-all (session)')

  const before = forwarded()
  t.equal(await call('/api/reports/q1'), 401, 'a role path without a session: 401')
  t.equal(await call('/api/reports/q1', reader.cookie), 403, 'a reader without the role: 403')
  t.equal(await call('/api/reports/q1', reader.cookie, 'POST'), 403)
  t.equal(forwarded(), before, 'none of those reached the upstream')
  t.equal(await call('/api/reports', reader.cookie), 403, 'the bare path of a prefix rule is covered too')
  t.equal(forwarded(), before, 'none of those reached the upstream')
  t.equal(await call('/api/reports/q1', editor.cookie), 200, 'an editor: forwarded')
  t.equal(app.requests.at(-1)?.url, '/api/reports/q1')
  t.equal(await call('/api/reports/q1', editor.cookie, 'POST'), 200)
  t.equal(await call('/api/reports/q1', editor.cookie, 'DELETE'), 403, 'DELETE needs role:admin')
  t.equal(await call('/api/other', reader.cookie), 200, 'the rest of /api/* is the catch-all\'s: any session')

  const variants = ['/api/reports/../reports/q1', '/api/./reports/q1', '/api//reports/q1', '/api/%72eports/q1', '/api/reports%2Fq1', '/api/reports/q1%00', '/API/reports/q1', '/api/reports/q1/..', '/api/x/../reports/q1', '/api\\reports\\q1']
  const refusedBefore = forwarded()
  for (const variant of variants) {
    const answer = await rawRequest(url, 'GET', variant, [['Cookie', reader.cookie]])
    t.ok(answer.status === 400 || answer.status === 403 || answer.status === 404, `${variant}: refused (${answer.status})`)
  }
  t.equal(forwarded(), refusedBefore, 'no variant reached the upstream for the reader')
})

t.test('an overlapping file stops the gateway from starting', async (t) => {
  const stack = await startTestStack(t)
  const file = join(tempDir(t), 'rules.json')
  writeFileSync(file, JSON.stringify([{ methods: ['*'], path: '/api/v1/*', access: 'public' }]))
  await t.rejects(gatewayOn(t, stack, { ACCESS_RULES_FILE: file }), { name: 'ConfigError', message: /overlaps the built-in rule/ })
})
