import t from 'tap'
import { normalisePath } from '../../../gateway/stages/normalise-path.ts'

// [raw target, expected path (or null when refused), expected query]
const CASES: Array<[string, string | null, string?]> = [
  ['/', '/'],
  ['/api/v1/query', '/api/v1/query'],
  ['/api/v1/query?x=1&y=%2F', '/api/v1/query', '?x=1&y=%2F'],
  ['/api/v1/query#frag', '/api/v1/query'],
  ['/api/v1/query?x=1#frag', '/api/v1/query', '?x=1'],
  ['/api/v1/query/../profile', '/api/v1/profile'],
  ['/api/v1/query/./', '/api/v1/query/'],
  ['/api/./v1/./query', '/api/v1/query'],
  ['/auth/./sign-in/email', '/auth/sign-in/email'],
  ['/auth/sign-in/%2e/email', '/auth/sign-in/email'],
  ['/%61uth/sign-in/email', '/auth/sign-in/email'],
  ['/%41PI/v1/query', '/API/v1/query'],
  ['/api/v1/%71uery', '/api/v1/query'],
  ['//api/v1/profile', '/api/v1/profile'],
  ['/api//v1///profile', '/api/v1/profile'],
  ['/api/v1/profile/', '/api/v1/profile/'],
  ['/API/V1/PROFILE', '/API/V1/PROFILE'],
  ['/api/v1/queryX', '/api/v1/queryX'],
  ['/api/v1/%7Euser', '/api/v1/~user'],
  ['/api/v1/a%20b', '/api/v1/a%20b'],
  ['/api/v1/%c3%a9', '/api/v1/%C3%A9'],
  ['/api/v1/%EF%BC%8Fprofile', '/api/v1/%EF%BC%8Fprofile'],
  ['/api/v1/%252f', '/api/v1/%252f'],
  ['/api/v1/%252e%252e/profile', '/api/v1/%252e%252e/profile'],
  ['/a/b/../../api/v1/query', '/api/v1/query'],
  ['/api/v1/query/..', '/api/v1'],
  ['/health?', '/health', '?'],
  ['http://evil.example/api/v1/profile', '/api/v1/profile'],
  ['http://evil.example/api/v1/query?x=1', '/api/v1/query', '?x=1'],
  ['https://h', '/'],
  ['HTTP://h/health', '/health'],
  ['/api/v1/query/../../../etc', '/etc'],
  ['/api/../../etc', null],
  ['/..', null],
  ['/../api/v1/profile', null],
  ['/api/v1/%2e%2e/profile', null],
  ['/api/v1/query/%2e%2e/profile', null],
  ['/api/v1/query/.%2e/profile', null],
  ['/api/v1/query/%2E./profile', null],
  ['/api/v1/query%2f..%2fprofile', null],
  ['/api/v1/query%2F..%2Fprofile', null],
  ['/api%2fv1/profile', null],
  ['/api/v1/query%5c..%5cprofile', null],
  ['/api/v1/query\\..\\profile', null],
  ['/api\\v1\\profile', null],
  ['/api/v1/profile%00', null],
  ['/api/v1/profile%00.json', null],
  ['/api/v1/profile\u0000', null],
  ['/api/v1/pro file', null],
  ['/api/v1/profile%0a', null],
  ['/api/v1/query;/../profile', null],
  ['/api/v1/profile;jsessionid=1', null],
  ['/auth/sign-in;x/email', null],
  ['/api;/v1/profile', null],
  ['/api/v1/%zz', null],
  ['/api/v1/%', null],
  ['/api/v1/%4', null],
  ['*', null],
  ['api/v1/profile', null],
  ['ftp://host/api', null],
  ['/api/v1/profile\t', null]
]

t.test('normalisePath', async (t) => {
  for (const [raw, expected, query = ''] of CASES) {
    const result = normalisePath(raw)
    if (expected === null) {
      t.equal(result.ok, false, `${JSON.stringify(raw)} is refused`)
    } else {
      t.same(result, { ok: true, path: expected, query }, `${JSON.stringify(raw)} → ${expected}`)
    }
  }
})

t.test('a normalised path is a fixed point', async (t) => {
  for (const [raw, expected] of CASES) {
    if (expected === null) continue
    const again = normalisePath(expected)
    t.same(again.ok && again.path, expected, `normalise(normalise(${JSON.stringify(raw)})) is stable`)
  }
})

t.test('`;` is allowed outside the protected prefixes', async (t) => {
  t.same(normalisePath('/docs;v=1'), { ok: true, path: '/docs;v=1', query: '' })
})

t.test('property: the fast path for plain targets agrees with the full normaliser', async (t) => {
  const { normaliseSlowly } = await import('../../../gateway/stages/normalise-path.ts')
  const fc = (await import('fast-check')).default
  const char = fc.constantFrom('a', 'Z', '0', '-', '_', '~', '.', '/', '%', '2', 'e', 'f', ';', '?', '#', '\\', ' ')
  fc.assert(fc.property(fc.array(char, { maxLength: 24 }), (chars) => {
    const target = '/' + chars.join('')
    t.same(normalisePath(target), normaliseSlowly(target), target)
  }), { numRuns: 2000, seed: 7 })
})
