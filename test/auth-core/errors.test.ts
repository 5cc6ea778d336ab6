import t from 'tap'
import { containsNul } from '../../auth-core/errors.ts'
import { cookieFetch, postJson, startTestStack, TEST_ORIGIN, uniqueEmail } from '../helper.ts'

const PASSWORD = 'correct horse battery'

// One stack for the file (the 5xx test breaks and then restores its session table).
const stack = await startTestStack(t)

t.test('a NUL anywhere in a body string is refused with 400 before better-auth sees it; nothing is created', async (t) => {
  const emails: string[] = []
  const signUp = async (body: string, type = 'application/json'): Promise<Response> =>
    fetch(`${stack.url}/auth/sign-up/email`, { method: 'POST', headers: { 'content-type': type, origin: TEST_ORIGIN }, body })
  // A raw NUL byte inside a JSON string is not JSON at all: the gateway refuses it before auth-core.
  const rawEmail = uniqueEmail('nul')
  emails.push(rawEmail)
  const raw = await signUp(`{"email":"${rawEmail}","password":"${PASSWORD}","name":"a\u0000b"}`)
  t.equal(raw.status, 400, 'a raw NUL byte in the name: 400')
  t.equal((await raw.json() as { error: string }).error, 'invalid_json', 'a raw NUL byte in the name: not JSON')
  const cases: Array<[string, (email: string) => string]> = [
    ['a \\u0000 escape in the name', (email) => `{"email":"${email}","password":"${PASSWORD}","name":"a\\u0000b"}`],
    ['a NUL in the password', (email) => JSON.stringify({ email, password: `${PASSWORD}\u0000`, name: 'N' })],
    ['a NUL in a key', (email) => JSON.stringify({ email, password: PASSWORD, name: 'N', ['ti\u0000er']: 'x' })],
    ['a NUL in a nested string', (email) => JSON.stringify({ email, password: PASSWORD, name: 'N', extra: { list: ['ok', 'n\u0000'] } })]
  ]
  for (const [name, body] of cases) {
    const email = uniqueEmail('nul')
    emails.push(email)
    const response = await signUp(body(email))
    t.equal(response.status, 400, `${name}: 400`)
    t.match(response.headers.get('content-type') ?? '', /^application\/json/, `${name}: JSON`)
    const payload = await response.json() as { error: string, message: string }
    t.equal(payload.error, 'bad_request', `${name}: bad_request`)
    t.match(payload.message, /must not contain NUL characters/, `${name}: says why`)
    t.equal(response.headers.get('x-content-type-options'), 'nosniff', `${name}: the gateway's headers`)
  }
  const formEmail = uniqueEmail('nul')
  emails.push(formEmail)
  const form = await signUp(new URLSearchParams({ email: formEmail, password: PASSWORD, name: 'a\u0000b' }).toString(), 'application/x-www-form-urlencoded')
  t.equal(form.status, 400, 'a %00 in a form body: 400')

  const { rows } = await stack.pool.query<{ email: string }>('SELECT email FROM "user" WHERE email = ANY($1)', [emails])
  t.same(rows, [], 'no user was created')

  const escaped = cookieFetch()
  const email = uniqueEmail('backslash')
  const fine = await postJson(escaped, `${stack.url}/auth/sign-up/email`, { email, password: PASSWORD, name: 'a\\u0000b' })
  t.equal(fine.status, 200, 'a literal backslash-u0000 (no NUL) is a name like any other')
  const { user } = await fine.json() as { user: { name: string } }
  t.equal(user.name, 'a\\u0000b')
})

t.test('a 5xx better-auth answers with an empty body becomes internal_error with a request id', async (t) => {
  const email = uniqueEmail()
  const up = await postJson(fetch, `${stack.url}/auth/sign-up/email`, { email, password: PASSWORD, name: 'Ada' }, { origin: TEST_ORIGIN })
  t.equal(up.status, 200)
  // better-auth answers an empty 500 when its adapter throws (here: no session may be inserted). A
  // table gone is a schema question instead (test/auth-core/fix-migrations-while-serving.test.ts).
  await stack.pool.query('ALTER TABLE "session" ADD CONSTRAINT no_sessions CHECK (false) NOT VALID')
  t.teardown(() => stack.pool.query('ALTER TABLE "session" DROP CONSTRAINT IF EXISTS no_sessions').then(() => undefined, () => undefined))
  const response = await postJson(fetch, `${stack.url}/auth/sign-in/email`, { email, password: PASSWORD }, { origin: TEST_ORIGIN })
  t.equal(response.status, 500)
  t.match(response.headers.get('content-type') ?? '', /^application\/json/)
  const body = await response.json() as { error: string, message: string, requestId: string }
  t.equal(body.error, 'internal_error')
  t.equal(body.message, 'The server could not complete the request')
  t.type(body.requestId, 'string')
  t.ok(body.requestId.length > 0)
  await stack.pool.query('ALTER TABLE "session" DROP CONSTRAINT no_sessions')
})

t.test('containsNul', async (t) => {
  const json = (text: string): [Buffer, string] => [Buffer.from(text), 'application/json']
  const cases: Array<[string, [Buffer, string | undefined], boolean]> = [
    ['clean JSON', json('{"name":"Ada"}'), false],
    ['\\u0000 in a value', json('{"name":"a\\u0000"}'), true],
    ['\\u0000 in a key', json('{"a\\u0000":1}'), true],
    ['a raw NUL byte', json('{"name":"a\u0000"}'), true],
    ['an escaped backslash before u0000', json('{"name":"a\\\\u0000"}'), false],
    ['\\u00000 is NUL then 0', json('{"name":"\\u00000"}'), true],
    ['\\u0001 is not NUL', json('{"name":"\\u0001"}'), false],
    ['malformed JSON with \\u0000 text is left to better-auth', json('{"name":"\\u0000'), false],
    ['a raw byte in any content type', [Buffer.from('a\u0000b'), 'text/plain'], true],
    ['%00 in a form', [Buffer.from('name=a%00b'), 'application/x-www-form-urlencoded'], true],
    ['%2500 in a form is a literal %00', [Buffer.from('name=a%2500b'), 'application/x-www-form-urlencoded; charset=utf-8'], false],
    ['an empty body', [Buffer.alloc(0), undefined], false]
  ]
  for (const [name, [body, type], expected] of cases) t.equal(containsNul(body, type), expected, name)
})
