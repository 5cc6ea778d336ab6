import t from 'tap'
import { isSameSiteWrite, originOf, writeOrigins } from '../../../gateway/guards/csrf.ts'
import { TEST_ORIGIN } from '../../helper.ts'
import { signUp } from '../../readers.ts'
import { stackWithUpstreams } from '../../upstream.ts'

const FOREIGN_ORIGIN = 'http://evil.example'

t.test('CSRF policy: allowed Origin, else an allowed Referer; bearer calls are exempt', async (t) => {
  const allowed = new Set([TEST_ORIGIN, 'http://localhost:8000'])
  const cases: Array<[string, Record<string, string>, 'cookie' | 'bearer', boolean]> = [
    ['allowed origin', { origin: TEST_ORIGIN }, 'cookie', true],
    ['public origin', { origin: 'http://localhost:8000' }, 'cookie', true],
    ['foreign origin', { origin: FOREIGN_ORIGIN }, 'cookie', false],
    ['prefix of an allowed origin', { origin: `${TEST_ORIGIN}.evil.example` }, 'cookie', false],
    ['opaque origin', { origin: 'null' }, 'cookie', false],
    ['foreign origin wins over an allowed referer', { origin: FOREIGN_ORIGIN, referer: `${TEST_ORIGIN}/docs` }, 'cookie', false],
    ['allowed referer without origin', { referer: `${TEST_ORIGIN}/docs/intro?x=1` }, 'cookie', true],
    ['foreign referer', { referer: `${FOREIGN_ORIGIN}/page` }, 'cookie', false],
    ['referer that is not a URL', { referer: 'localhost:3000' }, 'cookie', false],
    ['neither', {}, 'cookie', false],
    ['bearer, neither', {}, 'bearer', true],
    ['bearer, foreign origin', { origin: FOREIGN_ORIGIN }, 'bearer', true]
  ]
  for (const [name, headers, via, expected] of cases) {
    t.equal(isSameSiteWrite({ headers }, { via }, allowed), expected, name)
  }
})


t.test('originOf and writeOrigins: the origins cookie writes may come from', async (t) => {
  const cases: Array<[string, string | null]> = [
    ['http://localhost:3000/docs/intro?x=1', 'http://localhost:3000'],
    ['https://docs.example.com', 'https://docs.example.com'],
    ['HTTPS://Docs.Example.com:443/x', 'https://docs.example.com'],
    ['localhost:3000', null],
    ['null', null],
    ['', null],
    ['file:///etc/passwd', null]
  ]
  for (const [value, expected] of cases) t.equal(originOf(value), expected, JSON.stringify(value))
  t.same([...writeOrigins([TEST_ORIGIN], 'https://docs.example.com/base/')], [TEST_ORIGIN, 'https://docs.example.com'], 'ALLOWED_ORIGINS and the origin of PUBLIC_URL')
  t.throws(() => writeOrigins([TEST_ORIGIN], 'not a url'), /publicUrl must be a URL/)
})

t.test('cookie-authenticated writes to the app upstream need an allowed origin; bearer writes do not', async (t) => {
  const { stack, app } = await stackWithUpstreams(t)
  const { cookie } = await signUp(stack)
  const post = (headers: Record<string, string>) => fetch(`${stack.url}/api/notes`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: '{"note":"x"}' })
  const foreign = await post({ cookie, origin: FOREIGN_ORIGIN })
  t.equal(foreign.status, 403)
  t.equal((await foreign.json() as { error: string }).error, 'csrf_rejected')
  t.equal((await post({ cookie })).status, 403, 'neither Origin nor Referer')
  t.equal(app.requests.length, 0, 'nothing reached the app upstream')
  t.equal((await post({ cookie, origin: TEST_ORIGIN })).status, 200)
  t.equal((await post({ cookie, referer: `${TEST_ORIGIN}/docs/intro` })).status, 200, 'an allowed Referer without Origin')
  t.equal((await fetch(`${stack.url}/api/notes`, { headers: { cookie, origin: FOREIGN_ORIGIN } })).status, 200, 'reads are not checked')
  const { token } = await (await fetch(`${stack.url}/auth/jwt`, { headers: { cookie } })).json() as { token: string }
  t.equal((await post({ authorization: `Bearer ${token}` })).status, 200, 'bearer calls carry no ambient credential')
  t.equal(app.requests.length, 4)
})
