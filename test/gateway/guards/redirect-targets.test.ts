import t from 'tap'
import { isAllowedRedirect, redirectValues, refusedRedirect } from '../../../gateway/guards/redirect-targets.ts'

const PUBLIC_URL = 'http://localhost:8000'
const ALLOWED = new Set(['http://localhost:3000', 'https://docs.example.com'])

t.test('redirect targets: allowed only on the gateway or an allowed origin, after normalisation', async (t) => {
  const cases: Array<[string, boolean]> = [
    ['', true],
    ['/', true],
    ['/docs/intro', true],
    ['/docs/intro?x=1#top', true],
    ['/search?q=a%20b', true],
    ['http://localhost:3000/welcome', true],
    ['https://docs.example.com/', true],
    ['http://localhost:8000/auth/ok', true],
    ['/x/..//evil.com', false],
    ['/.//evil.com', false],
    ['//evil.com', false],
    ['/%2e%2e//evil.com', false],
    ['/x/%2e%2e//evil.com', false],
    ['/\\evil.com', false],
    ['/%5Cevil.com', false],
    ['/%09/evil.com', false],
    [' /docs', false],
    ['https://evil.com', false],
    ['https://docs.example.com.evil.com/', false],
    ['https://evil.com@docs.example.com/', false],
    ['https://docs.example.com:8443/', false],
    ['http://docs.example.com/', false],
    ['javascript:alert(1)', false],
    ['data:text/html,x', false],
    ['evil.com', false],
    ['docs/intro', false],
    ['https:/evil.com', false],
    ['/%zz', false]
  ]
  for (const [target, allowed] of cases) {
    t.equal(isAllowedRedirect(target, PUBLIC_URL, ALLOWED), allowed, `${JSON.stringify(target)} → ${allowed ? 'allowed' : 'refused'}`)
  }
})

t.test('redirect values are found in nested objects and arrays; a non-string is refused', async (t) => {
  t.same(redirectValues({ callbackURL: '/a', nested: { redirectTo: ['/b', '/c'] }, other: '//x' }), ['/a', '/b', '/c'])
  t.same(redirectValues('callbackURL'), [])
  t.equal(refusedRedirect(['/a', 'https://docs.example.com/'], PUBLIC_URL, ALLOWED), undefined)
  t.equal(refusedRedirect(['/a', '//evil.com'], PUBLIC_URL, ALLOWED), '//evil.com')
  t.equal(refusedRedirect([{ href: '//evil.com' }], PUBLIC_URL, ALLOWED), '{"href":"//evil.com"}')
})
