import t from 'tap'
import { coverageProblems, isEndpointAccessible, matchingRules } from '../../../gateway/access/is-endpoint-accessible.ts'
import { normalisePath } from '../../../gateway/stages/normalise-path.ts'
import { DEFAULT_RULES } from '../../../gateway/access/rules.ts'
import type { AccessRule } from '../../../gateway/access/rules.ts'

const READER = { id: 'u1', role: 'reader' }
const ADMIN = { id: 'u2', role: 'admin,reader' }

type Who = 'anon' | 'reader' | 'admin'
type Expected = 'allow' | 401 | 403 | 404 | 400

// [method, raw target, who, expected]: the raw target goes through the normaliser first, as in the gateway.
const CASES: Array<[string, string, Who, Expected]> = [
  ['GET', '/health', 'anon', 'allow'],
  ['HEAD', '/health', 'anon', 'allow'],
  ['POST', '/health', 'anon', 404],
  ['GET', '/ready', 'anon', 'allow'],
  ['POST', '/auth/sign-in/email', 'anon', 'allow'],
  ['GET', '/auth/get-session', 'anon', 'allow'],
  ['OPTIONS', '/auth/sign-in/email', 'anon', 'allow'],
  ['DELETE', '/auth/anything', 'anon', 'allow'],
  ['GET', '/auth', 'anon', 'allow'],
  ['GET', '/auth/jwt', 'anon', 401],
  ['GET', '/auth/jwt', 'reader', 'allow'],
  ['HEAD', '/auth/jwt', 'anon', 401],
  ['GET', '/auth/me', 'anon', 401],
  ['GET', '/auth/me', 'reader', 'allow'],
  ['POST', '/auth/login', 'anon', 'allow'],
  ['POST', '/auth/token/refresh', 'anon', 'allow'],
  ['POST', '/auth/logout', 'anon', 'allow'],
  ['POST', '/auth/signup', 'anon', 'allow'],
  ['GET', '/auth/./jwt', 'anon', 401],
  ['GET', '/auth/%6Awt', 'anon', 401],
  ['GET', '//auth//jwt', 'anon', 401],
  ['GET', '/auth/admin', 'admin', 'allow'],
  ['GET', '/auth/admin', 'reader', 403],
  ['POST', '/auth/admin/ban-user', 'admin', 'allow'],
  ['POST', '/auth/admin/ban-user', 'reader', 403],
  ['POST', '/auth/admin/ban-user', 'anon', 401],
  ['GET', '/auth//admin/list-users', 'reader', 403],
  ['GET', '/auth/./admin/list-users', 'reader', 403],
  ['GET', '/auth/x/../admin/list-users', 'reader', 403],
  ['GET', '/auth/%61dmin/list-users', 'reader', 403],
  ['GET', '/api/v1/admin/audit', 'admin', 'allow'],
  ['GET', '/api/v1/admin/audit', 'reader', 403],
  ['GET', '/api/v1/admin/audit', 'anon', 401],
  ['GET', '/api/v1/sessions', 'reader', 'allow'],
  ['GET', '/api/v1/sessions', 'anon', 401],
  ['DELETE', '/api/v1/sessions/:id', 'reader', 'allow'],
  ['DELETE', '/api/v1/sessions/:id', 'anon', 401],
  ['GET', '/api/validate-session', 'anon', 'allow'],
  ['POST', '/api/v1/query', 'anon', 'allow'],
  ['POST', '/api/v1/select', 'anon', 'allow'],
  ['POST', '/api/v1/query', 'reader', 'allow'],
  ['GET', '/api/v1/query', 'anon', 401],
  ['POST', '/api/v1/queryX', 'anon', 401],
  ['POST', '/api/v1/query/', 'anon', 401],
  ['POST', '/api/v1/query/x', 'anon', 401],
  ['POST', '/api/v1/Query', 'anon', 401],
  ['POST', '/API/V1/QUERY', 'anon', 404],
  ['GET', '/api/v1/profile', 'anon', 401],
  ['GET', '/api/v1/profile', 'reader', 'allow'],
  ['POST', '/api/v1/profile', 'anon', 401],
  ['DELETE', '/api/v1/profile', 'anon', 401],
  ['PUT', '/api/v1/profile', 'reader', 'allow'],
  ['HEAD', '/api/v1/profile', 'anon', 401],
  ['OPTIONS', '/api/v1/profile', 'anon', 401],
  ['GET', '/api/v1/profile/', 'anon', 401],
  ['GET', '/api/v1/profile/export', 'anon', 401],
  ['GET', '/api/v1/profile/export', 'reader', 'allow'],
  ['GET', '/API/V1/PROFILE', 'anon', 404],
  ['GET', '//api/v1/profile', 'anon', 401],
  ['GET', '/api/v1/query/../profile', 'anon', 401],
  ['POST', '/api/v1/query/../profile', 'anon', 401],
  ['GET', '/api/v1/query/%2e%2e/profile', 'anon', 400],
  ['GET', '/api/v1/%2e%2e/v1/profile', 'anon', 400],
  ['GET', '/api/v1/query%2F..%2Fprofile', 'anon', 400],
  ['GET', '/api/v1/query%2f..%2fprofile', 'anon', 400],
  ['GET', '/api/v1/%252f', 'anon', 401],
  ['GET', '/api/v1/query;/../profile', 'anon', 400],
  ['POST', '/api/v1/query;x', 'anon', 400],
  ['GET', '/api/v1/query\\..\\profile', 'anon', 400],
  ['GET', '/api/v1/profile%00', 'anon', 400],
  ['GET', '/api/v1/%EF%BC%8Fprofile', 'anon', 401],
  ['GET', '/api／v1／profile', 'anon', 404],
  ['GET', '/api/other', 'anon', 401],
  ['GET', '/api/other', 'reader', 'allow'],
  ['GET', '/api', 'anon', 404],
  ['GET', '/api/', 'anon', 401],
  ['POST', 'http://evil.example/api/v1/profile', 'anon', 401],
  ['POST', 'http://evil.example/api/v1/query', 'anon', 'allow'],
  ['GET', 'http://evil.example/health', 'anon', 'allow'],
  ['GET', '/', 'anon', 404],
  ['GET', '/docs', 'anon', 'allow'],
  ['HEAD', '/docs', 'anon', 'allow'],
  ['GET', '/docs/x', 'anon', 404],
  ['GET', '/openapi.json', 'anon', 'allow'],
  ['POST', '/openapi.json', 'anon', 404],
  ['GET', '/healthz', 'anon', 404],
  ['TRACE', '/api/v1/query', 'anon', 401],
  ['TRACE', '/health', 'anon', 404],
  ['GET', '/..', 'anon', 400],
  ['GET', '/%61pi/v1/profile', 'anon', 401],
  ['POST', '/%61pi/v1/%71uery', 'anon', 'allow'],
  ['GET', '/auth/jwks', 'anon', 'allow'],
  ['POST', '/auth/jwks', 'anon', 'allow'],
  ['PATCH', '/auth/user/profile', 'anon', 'allow'],
  ['GET', '/auth/user/profile', 'anon', 'allow']
]

function identity (who: Who): Record<string, unknown> | null {
  return who === 'anon' ? null : who === 'reader' ? READER : ADMIN
}

t.test('the cases exercise every rule of the default table', async (t) => {
  // rules.ts: "to add a route: register it, add its rule here, and add a case to the access tests".
  const exercised = new Set<AccessRule>()
  for (const [method, raw] of CASES) {
    const normalised = normalisePath(raw)
    if (normalised.ok) for (const rule of matchingRules(DEFAULT_RULES, method, normalised.path)) exercised.add(rule)
  }
  for (const rule of DEFAULT_RULES) t.ok(exercised.has(rule), `${rule.methods.join(',')} ${rule.path} (${rule.access}) has a case`)
  const outcomes = new Set(CASES.map(([, , , expected]) => expected))
  t.same([...outcomes].sort(), ([400, 401, 403, 404, 'allow'] as Expected[]).sort(), 'every outcome of the default table appears: allowed, 400, 401, 403 (a role), 404')
})

t.test('isEndpointAccessible over the default rules, after normalisation', async (t) => {
  for (const [method, raw, who, expected] of CASES) {
    const normalised = normalisePath(raw)
    const label = `${method} ${raw} as ${who}`
    if (expected === 400) {
      t.equal(normalised.ok, false, `${label}: refused before matching`)
      continue
    }
    t.ok(normalised.ok, `${label}: normalises`)
    if (!normalised.ok) continue
    const decision = isEndpointAccessible(DEFAULT_RULES, { method, path: normalised.path, identity: identity(who) })
    if (expected === 'allow') t.equal(decision.allowed, true, `${label}: allowed`)
    else t.same({ allowed: decision.allowed, status: decision.allowed ? null : decision.status }, { allowed: false, status: expected }, `${label}: ${expected}`)
  }
})

t.test('roles', async (t) => {
  const rules: AccessRule[] = [{ methods: ['GET'], path: '/admin/*', access: 'role:admin' }]
  t.same(isEndpointAccessible(rules, { method: 'GET', path: '/admin/x', identity: null }).allowed, false)
  const reader = isEndpointAccessible(rules, { method: 'GET', path: '/admin/x', identity: READER })
  t.same(reader.allowed ? 'allowed' : reader.status, 403)
  t.equal(isEndpointAccessible(rules, { method: 'GET', path: '/admin/x', identity: ADMIN }).allowed, true)
  t.equal(isEndpointAccessible(rules, { method: 'GET', path: '/administrator', identity: ADMIN }).allowed, false, 'prefix on a slash boundary only')
})

t.test('default deny: an empty table allows nothing', async (t) => {
  for (const [method, raw] of CASES) {
    const normalised = normalisePath(raw)
    if (!normalised.ok) continue
    t.equal(isEndpointAccessible([], { method, path: normalised.path, identity: ADMIN }).allowed, false)
  }
})

t.test('coverage proof: gaps and overlaps are named', async (t) => {
  const routes = [{ method: 'GET', url: '/health' }, { method: 'POST', url: '/api/v1/query' }, { method: 'GET', url: '/api/*' }]
  t.same(coverageProblems(DEFAULT_RULES, routes), [])
  t.same(coverageProblems(DEFAULT_RULES, [{ method: 'GET', url: '/metrics' }]), ['route GET /metrics matches no access rule'])
  const overlapping: AccessRule[] = [
    { methods: ['GET'], path: '/api/v1/profile', access: 'session' },
    { methods: ['*'], path: '/api/v1/profile', access: 'public' }
  ]
  const problems = coverageProblems(overlapping, [{ method: 'GET', url: '/api/v1/profile' }])
  t.equal(problems.length, 1)
  t.match(problems[0], /route GET \/api\/v1\/profile matches 2 access rules/)
  t.same(coverageProblems(DEFAULT_RULES, [{ method: 'OPTIONS', url: '*' }]), [], 'CORS preflight is not an endpoint')
  t.equal(matchingRules(DEFAULT_RULES, 'GET', '/auth/jwt').length, 1, 'an exact rule beats the prefix rule')
})

t.test('parameters and specificity: literal beats parameter beats prefix, segment by segment', async (t) => {
  const rules: AccessRule[] = [
    { methods: ['*'], path: '/x/*', access: 'session' },
    { methods: ['*'], path: '/x/:id', access: 'role:a' },
    { methods: ['*'], path: '/x/new', access: 'public' },
    { methods: ['*'], path: '/x/:id/*', access: 'role:b' },
    { methods: ['*'], path: '/x/:id/edit', access: 'role:c' },
    { methods: ['*'], path: '/x/new/*', access: 'role:d' }
  ]
  const cases: Array<[string, string | null]> = [
    ['/x/1', '/x/:id'],
    ['/x/new', '/x/new'],
    ['/x/', '/x/*'],
    ['/x/1/2/3', '/x/:id/*'],
    ['/x/1/', '/x/:id/*'],
    ['/x/1/edit', '/x/:id/edit'],
    ['/x/new/edit', '/x/new/*'],
    ['/x', null],
    ['/y/1', null]
  ]
  for (const [path, expected] of cases) {
    const found = matchingRules(rules, 'GET', path)
    t.same(found.map((rule) => rule.path), expected === null ? [] : [expected], `${path}: ${expected ?? 'no rule'}`)
  }
  t.same(matchingRules([{ methods: ['*'], path: '/x/:a', access: 'public' }, { methods: ['*'], path: '/x/:b', access: 'session' }], 'GET', '/x/1').length, 2, 'one shape, two rules: an overlap')
})
