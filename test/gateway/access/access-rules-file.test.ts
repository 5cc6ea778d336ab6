import t from 'tap'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { isEndpointAccessible } from '../../../gateway/access/is-endpoint-accessible.ts'
import { DEFAULT_RULES } from '../../../gateway/access/rules.ts'
import type { AccessRule } from '../../../gateway/access/rules.ts'
import { loadAccessRules, parseAccessRules } from '../../../gateway/access/rules-file.ts'
import { gatewayOn, listenOn, startTestStack, tempDir, TEST_ORIGIN } from '../../helper.ts'
import { rawRequest } from '../../raw-http.ts'
import { signUp } from '../../readers.ts'
import { recordingUpstream } from '../../upstream.ts'

// ACCESS_RULES_FILE (issue 16, deliver 3): rules for the app upstream as data, checked at startup
// with the coverage proof's rule (one request, one rule), and enforced on the paths below the
// `/api/*` catch-all, whatever their spelling.
const FILE = '/etc/auth-gateway/rules.json'
const parse = (rules: unknown): AccessRule[] => parseAccessRules(FILE, JSON.stringify(rules), DEFAULT_RULES)
const RULES = [
  { methods: ['GET', 'POST'], path: '/api/reports/*', access: 'role:editor' },
  { methods: ['DELETE'], path: '/api/reports/*', access: 'role:admin' },
  { methods: ['GET'], path: '/api/reports/:id/preview', access: 'session' },
  { methods: ['*'], path: '/api/exports', access: 'role:editor' },
  { methods: ['GET'], path: '/api/status', access: 'public' },
  { methods: ['POST'], path: '/api/feedback', access: 'public' }
]
const CATCH_ALL = DEFAULT_RULES.filter((rule) => rule.path === '/api/*')

t.test('a valid file: its rules, frozen; a prefix covers its bare path too', async (t) => {
  const rules = parse(RULES)
  t.same(rules.map((rule) => [rule.methods.join(','), rule.path, rule.access]), [
    ['GET,POST', '/api/reports/*', 'role:editor'], ['GET,POST', '/api/reports', 'role:editor'],
    ['DELETE', '/api/reports/*', 'role:admin'], ['DELETE', '/api/reports', 'role:admin'],
    ['GET', '/api/reports/:id/preview', 'session'],
    ['*', '/api/exports', 'role:editor'],
    ['GET', '/api/status', 'public'],
    ['POST', '/api/feedback', 'public']
  ])
  t.ok(Object.isFrozen(rules[0]) && Object.isFrozen(rules[0].methods), 'frozen')
  t.same(parse([]), [], 'an empty list is no extra rule')
})

t.test('precedence: exact beats a parameter, a parameter beats a prefix, the file beats the catch-all', async (t) => {
  const rules = [...CATCH_ALL, ...parse([...RULES, { methods: ['GET'], path: '/api/reports/latest/preview', access: 'role:admin' }])]
  const reader = { id: 'u1', role: 'user' }
  const cases: Array<[string, string, Record<string, unknown> | null, string | number]> = [
    ['GET', '/api/reports/q1', reader, 403],
    ['GET', '/api/reports', reader, 403],
    ['HEAD', '/api/reports/q1', reader, 403],
    ['PUT', '/api/reports/q1', reader, 'allow'],
    ['DELETE', '/api/reports/q1', { id: 'u2', role: 'editor' }, 403],
    ['DELETE', '/api/reports/q1', { id: 'u3', role: 'editor,admin' }, 'allow'],
    ['GET', '/api/reports/q1/preview', reader, 'allow'],
    ['GET', '/api/reports/q1/preview', null, 401],
    ['GET', '/api/reports/latest/preview', reader, 403],
    ['GET', '/api/reports/q1/preview/x', reader, 403],
    ['GET', '/api/status', null, 'allow'],
    ['POST', '/api/status', null, 401],
    ['GET', '/api/other', null, 401],
    ['GET', '/api/other', reader, 'allow']
  ]
  for (const [method, path, identity, expected] of cases) {
    const decision = isEndpointAccessible(rules, { method, path, identity })
    t.equal(decision.allowed ? 'allow' : decision.status, expected, `${method} ${path} as ${identity === null ? 'anonymous' : String(identity.role)}: ${expected}`)
  }
})

t.test('each kind of bad file stops startup with a ConfigError naming the file and the entry', async (t) => {
  const status = RULES[4]
  const cases: Array<[string, string, RegExp]> = [
    ['not JSON', '{"methods":', /must hold JSON/],
    ['not a list', '{"rules":[]}', /must hold a JSON array of rules/],
    ['an entry that is not an object', '["GET /api/x"]', /entry 0 must be an object/],
    ['an unknown field', JSON.stringify([{ ...status, role: 'admin' }]), /entry 0 has unknown field "role"/],
    ['no methods', JSON.stringify([{ ...status, methods: [] }]), /entry 0: methods must be a non-empty list/],
    ['an unknown method', JSON.stringify([status, { ...status, methods: ['TRACE'] }]), /entry 1: methods must be a non-empty list of GET, POST, PUT, PATCH, DELETE, \* \(got \["TRACE"\]\)/],
    ['a lower-case method', JSON.stringify([{ ...status, methods: ['get'] }]), /entry 0: methods/],
    ['a repeated method', JSON.stringify([{ ...status, methods: ['GET', 'GET'] }]), /entry 0: methods must not repeat/],
    ['"*" beside another', JSON.stringify([{ ...status, methods: ['*', 'GET'] }]), /"\*" stands alone/],
    ['a path that is not a string', JSON.stringify([{ ...status, path: 3 }]), /entry 0: path must be a string/],
    ['a path outside /api/', JSON.stringify([{ ...status, path: '/auth/x' }]), /entry 0: path must be below \/api\//],
    ['the catch-all itself', JSON.stringify([{ ...status, path: '/api/*' }]), /entry 0: path must be below \/api\/\* \(that is the catch-all itself\)/],
    ['a dot segment', JSON.stringify([{ ...status, path: '/api/../auth' }]), /entry 0: path has a segment "\.\."/],
    ['an empty segment', JSON.stringify([{ ...status, path: '/api//x' }]), /entry 0: path has a segment ""/],
    ['a trailing slash', JSON.stringify([{ ...status, path: '/api/x/' }]), /entry 0: path has a segment ""/],
    ['an encoded slash', JSON.stringify([{ ...status, path: '/api/a%2Fb' }]), /entry 0: path has a segment "a%2Fb"/],
    ['upper case', JSON.stringify([{ ...status, path: '/api/Reports' }]), /entry 0: path must be in lower case/],
    ['a malformed parameter', JSON.stringify([{ ...status, path: '/api/reports/:1d' }]), /entry 0: path has a segment ":1d"/],
    ['a star inside', JSON.stringify([{ ...status, path: '/api/*/x' }]), /entry 0: path has a segment "\*"/],
    ['an unknown access', JSON.stringify([{ ...status, access: 'admin' }]), /entry 0: access must be "public", "session" or "role:<name>".*\(got "admin"\)/],
    ['an access that is not a string', JSON.stringify([{ ...status, access: true }]), /entry 0: access must be/],
    ['an empty role', JSON.stringify([{ ...status, access: 'role:' }]), /entry 0: access/],
    ['a role with capitals', JSON.stringify([{ ...status, access: 'role:Editor' }]), /entry 0: access/],
    ['two roles in one rule', JSON.stringify([{ ...status, access: 'role:editor,admin' }]), /entry 0: access/],
    ['a rule over built-in routes', JSON.stringify([{ methods: ['*'], path: '/api/v1/*', access: 'public' }]), /entry 0 \(\/api\/v1\/\*\) overlaps the built-in rule for \/api\/v1\/query: built-in routes keep their own rules/],
    ['a rule over the profile export', JSON.stringify([status, { methods: ['GET'], path: '/api/v1/profile/*', access: 'public' }]), /entry 1 \(\/api\/v1\/profile\/\*\) overlaps the built-in rule for \/api\/v1\/profile\/export/],
    ['a method a built-in route does not take', JSON.stringify([{ methods: ['GET'], path: '/api/v1/query', access: 'public' }]), /entry 0 \(\/api\/v1\/query\) overlaps the built-in rule for \/api\/v1\/query/],
    ['a rule on a built-in route\'s parameter', JSON.stringify([{ methods: ['GET'], path: '/api/v1/sessions/abc', access: 'public' }]), /overlaps the built-in rule for \/api\/v1\/sessions\/:id/],
    ['a parameter over a built-in route', JSON.stringify([{ methods: ['GET'], path: '/api/:name', access: 'public' }]), /entry 0 \(\/api\/:name\) overlaps the built-in rule for \/api\/validate-session/],
    ['two entries deciding the same request', JSON.stringify([RULES[0], { methods: ['GET'], path: '/api/reports/*', access: 'public' }]), /entry 1 \(GET \/api\/reports\/\*\) overlaps entry 0 \(\/api\/reports\/\*\): one request, two rules/],
    ['"*" and a method on one path', JSON.stringify([status, { methods: ['*'], path: '/api/status', access: 'session' }]), /entry 1 \(GET \/api\/status\) overlaps entry 0/],
    ['an exact path over a prefix\'s bare path', JSON.stringify([RULES[0], { methods: ['POST', 'PUT'], path: '/api/reports', access: 'session' }]), /entry 1 \(POST \/api\/reports\) overlaps entry 0 \(\/api\/reports\)/],
    ['two parameters of one shape', JSON.stringify([{ methods: ['GET'], path: '/api/reports/:id', access: 'role:editor' }, { methods: ['GET', 'PATCH'], path: '/api/reports/:key', access: 'public' }]), /entry 1 \(GET \/api\/reports\/:key\) overlaps entry 0 \(\/api\/reports\/:id\)/]
  ]
  for (const [name, text, message] of cases) {
    t.throws(() => parseAccessRules(FILE, text, DEFAULT_RULES), { name: 'ConfigError', variable: 'ACCESS_RULES_FILE', message }, name)
    try {
      parseAccessRules(FILE, text, DEFAULT_RULES)
    } catch (err) {
      t.match((err as Error).message, /^Invalid configuration: ACCESS_RULES_FILE \(\/etc\/auth-gateway\/rules\.json\) /, `${name}: names the variable and the file`)
    }
  }
  const dir = tempDir(t)
  t.throws(() => loadAccessRules(join(dir, 'missing.json'), DEFAULT_RULES), { name: 'ConfigError', message: /\(.*missing\.json\) cannot be read: ENOENT/ }, 'a file that does not exist')
  mkdirSync(join(dir, 'rules.d'))
  t.throws(() => loadAccessRules(join(dir, 'rules.d'), DEFAULT_RULES), { name: 'ConfigError', message: /cannot be read: EISDIR/ }, 'a directory')
})

t.test('rules that do not overlap are accepted', async (t) => {
  const accepted: Array<[string, unknown[]]> = [
    ['one path, different methods', [RULES[0], RULES[1]]],
    ['a parameter below a prefix, an exact path beside a parameter', [RULES[0], RULES[2], { methods: ['GET'], path: '/api/reports/latest/preview', access: 'public' }]],
    ['parameters in different places (the literal decides)', [{ methods: ['GET'], path: '/api/:kind/summary', access: 'session' }, { methods: ['GET'], path: '/api/reports/:id', access: 'role:editor' }]],
    ['a path beside the built-in ones under /api/v1/', [{ methods: ['GET'], path: '/api/v1/notes', access: 'role:editor' }]]
  ]
  for (const [name, rules] of accepted) t.doesNotThrow(() => parse(rules), name)
})

t.test('the rules are enforced on the app upstream over HTTP, whatever the spelling of the path', async (t) => {
  const app = await recordingUpstream(t)
  const stack = await startTestStack(t)
  const file = join(tempDir(t), 'rules.json')
  writeFileSync(file, JSON.stringify(RULES))
  const url = await listenOn(await gatewayOn(t, stack, { APP_UPSTREAM_URL: app.url, ACCESS_RULES_FILE: file }))
  const reader = await signUp({ url })
  const editor = await signUp({ url })
  const chief = await signUp({ url })
  await stack.pool.query('UPDATE "user" SET role = $1 WHERE id = $2', ['editor', editor.userId])
  await stack.pool.query('UPDATE "user" SET role = $1 WHERE id = $2', ['editor,admin', chief.userId])
  const call = async (path: string, cookie?: string, method = 'GET', origin = TEST_ORIGIN): Promise<Response> => fetch(`${url}${path}`, { method, headers: cookie === undefined ? { origin } : { cookie, origin } })
  const status = async (path: string, cookie?: string, method = 'GET'): Promise<number> => (await call(path, cookie, method)).status
  const forwarded = (): number => app.requests.length

  await t.test('public paths: no session needed, a signed-in caller still named, CSRF as on every app route', async (t) => {
    t.equal(await status('/api/status'), 200, 'GET /api/status without a session')
    t.notOk(app.requests.at(-1)?.headers['x-user-id'], 'forwarded without identity')
    t.equal(await status('/api/status', reader.cookie), 200)
    t.equal(app.requests.at(-1)?.headers['x-user-id'], reader.userId, 'a signed-in caller\'s identity still goes along')
    t.equal(await status('/api/status', undefined, 'POST'), 401, 'only the listed method is public: POST falls to the catch-all (session)')
    t.equal(await status('/api/feedback', undefined, 'POST'), 200, 'a public write without a session')
    const before = forwarded()
    const foreign = await call('/api/feedback', reader.cookie, 'POST', 'https://evil.example')
    t.equal(foreign.status, 403, 'a cookie write from a foreign origin is refused')
    t.equal((await foreign.json() as { error: string }).error, 'csrf_rejected')
    t.equal(forwarded(), before, 'and not forwarded')
    t.equal(await status('/api/feedback', reader.cookie, 'POST'), 200, 'from an allowed origin it goes through')
  })

  await t.test('role paths: 401 without a session, 403 without the role (never forwarded), forwarded with it', async (t) => {
    const before = forwarded()
    t.equal(await status('/api/reports/q1'), 401, 'no session: 401')
    const refused = await call('/api/reports/q1', reader.cookie)
    t.equal(refused.status, 403, 'a reader without the role: 403')
    t.match(await refused.json(), { error: 'forbidden', message: 'You do not have access to this endpoint' }, 'in the project\'s error format')
    t.equal(await status('/api/reports/q1', reader.cookie, 'POST'), 403)
    t.equal(await status('/api/reports/q1', reader.cookie, 'HEAD'), 403, 'HEAD is decided by the GET rule')
    t.equal(await status('/api/reports', reader.cookie), 403, 'the bare path of a prefix rule is covered too')
    t.equal(await status('/api/exports', reader.cookie, 'PATCH'), 403, 'an exact path, every method')
    t.equal(await status('/api/reports/q1', editor.cookie, 'DELETE'), 403, 'DELETE needs role:admin')
    t.equal(forwarded(), before, 'none of those reached the upstream')
    t.equal(await status('/api/reports/q1', editor.cookie), 200, 'an editor: forwarded')
    t.equal(app.requests.at(-1)?.url, '/api/reports/q1')
    t.equal(await status('/api/reports/q1', editor.cookie, 'POST'), 200)
    t.equal(await status('/api/exports', editor.cookie, 'PUT'), 200)
    t.equal(await status('/api/reports/q1', chief.cookie, 'DELETE'), 200, 'one of several roles is enough')
    t.equal(await status('/api/reports/q1/preview', reader.cookie), 200, 'a more specific parameter rule (session) decides its paths')
    t.equal(await status('/api/reports/q1/preview'), 401)
    t.equal(await status('/api/reports/q1', reader.cookie, 'PUT'), 200, 'a method no file rule lists falls to the catch-all (session)')
    t.equal(await status('/api/other', reader.cookie), 200, 'the rest of /api/* is the catch-all\'s: any session')
    t.equal(await status('/api/other'), 401)
  })

  await t.test('raw-socket variants of a role path never reach the upstream for a reader', async (t) => {
    const variants = [
      '/api/reports/../reports/q1', '/api/./reports/q1', '/api//reports/q1', '//api/reports/q1', '/api/%72eports/q1', '/api/%52eports/q1',
      '/api/reports%2Fq1', '/api/reports%2fq1', '/api/reports/q1%00', '/api/reports/q1/..', '/api/x/../reports/q1', '/api/x/%2e%2e/reports/q1',
      '/api\\reports\\q1', '/api/reports;x/q1', '/api/reports/q1#x', 'http://localhost/api/reports/q1',
      '/API/reports/q1', '/api/Reports/q1', '/api/REPORTS/Q1', '/api/reports/', '/api/Reports', '/api/reports/*', '/api/reports/:id',
      '/api/exports/', '/api/Exports', '//api//exports//', '/api/exports?x=1', '/api/%65xports', '/api/exports/.'
    ]
    const before = forwarded()
    for (const variant of variants) {
      const answer = await rawRequest(url, 'GET', variant, [['Cookie', reader.cookie]])
      t.ok([400, 403, 404].includes(answer.status), `${variant}: refused (${answer.status})`)
    }
    t.equal(forwarded(), before, 'no variant reached the upstream')
    const spelled = await rawRequest(url, 'GET', '/api/Reports/q1/', [['Cookie', editor.cookie]])
    t.equal(spelled.status, 200, 'an editor may spell it so')
    t.equal(app.requests.at(-1)?.url, '/api/Reports/q1/', 'and the upstream receives the path that was decided')
  })
})

t.test('an overlapping file stops the gateway from starting', async (t) => {
  const stack = await startTestStack(t)
  const dir = tempDir(t)
  const withBuiltIn = join(dir, 'built-in.json')
  writeFileSync(withBuiltIn, JSON.stringify([RULES[4], { methods: ['*'], path: '/api/v1/*', access: 'public' }]))
  await t.rejects(gatewayOn(t, stack, { APP_UPSTREAM_URL: 'http://127.0.0.1:9', ACCESS_RULES_FILE: withBuiltIn }), { name: 'ConfigError', message: /ACCESS_RULES_FILE \(.*built-in\.json\) entry 1 \(\/api\/v1\/\*\) overlaps the built-in rule for \/api\/v1\/query/ }, 'over a built-in route')
  const twoEntries = join(dir, 'two.json')
  writeFileSync(twoEntries, JSON.stringify([RULES[0], RULES[4], { methods: ['POST'], path: '/api/reports/*', access: 'session' }]))
  await t.rejects(gatewayOn(t, stack, { APP_UPSTREAM_URL: 'http://127.0.0.1:9', ACCESS_RULES_FILE: twoEntries }), { name: 'ConfigError', message: /entry 2 \(POST \/api\/reports\/\*\) overlaps entry 0 \(\/api\/reports\/\*\): one request, two rules/ }, 'two entries')
})
