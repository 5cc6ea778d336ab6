import t from 'tap'
import { postJson, startTestStack } from '../../helper.ts'
import { rawRequest } from '../../raw-http.ts'
import { bearer, issueToken, signUp } from '../../readers.ts'

// GET /auth/me (issue 19): the caller, for clients without a browser; 401 when it is no one, where
// /api/validate-session answers { user: null }.
const stack = await startTestStack(t)

async function me (headers: Record<string, string> = {}): Promise<{ status: number, body: Record<string, unknown>, cacheControl: string | null }> {
  const response = await fetch(`${stack.url}/auth/me`, { headers })
  return { status: response.status, body: await response.json() as Record<string, unknown>, cacheControl: response.headers.get('cache-control') }
}

t.test('a session cookie or a client token: the caller', async (t) => {
  const reader = await signUp(stack)
  const byCookie = await me({ cookie: reader.cookie })
  t.equal(byCookie.status, 200)
  t.match(byCookie.body, { user: { id: reader.userId, email: reader.email }, session: { userId: reader.userId } }, 'the user and the better-auth session')
  t.equal(byCookie.cacheControl, 'no-store')
  const { token } = await issueToken(stack, reader)
  const byToken = await me(bearer(token))
  t.equal(byToken.status, 200)
  t.match(byToken.body, { user: { id: reader.userId, email: reader.email }, session: null }, 'the user; a token has no server session')
  const validated = await fetch(`${stack.url}/api/validate-session`, { headers: bearer(token) })
  t.same(byToken.body, await validated.json(), 'described as validate-session describes it')
})

t.test('no one: 401 with the error body, where validate-session says { user: null }', async (t) => {
  for (const [what, headers] of [
    ['no credentials', {}],
    ['a forged cookie', { cookie: 'better-auth.session_token=forged.value' }],
    ['a token that is not one', bearer('not.a.token')]
  ] as const) {
    const answer = await me(headers)
    t.equal(answer.status, 401, what)
    t.match(answer.body, { error: /^(unauthorized|invalid_token)$/, message: String }, `${what}: { error, message }`)
  }
  const validated = await fetch(`${stack.url}/api/validate-session`)
  t.same(await validated.json(), { user: null })
})

t.test('signed out, or its tokens revoked: 401 from the next request on', async (t) => {
  const reader = await signUp(stack)
  const { token } = await issueToken(stack, reader)
  t.equal((await me(bearer(token))).status, 200)
  const revoked = await postJson(reader.browser, `${stack.url}/auth/revoke-sessions`, {})
  t.equal(revoked.status, 200)
  await revoked.arrayBuffer()
  t.equal((await me({ cookie: reader.cookie })).status, 401, 'the session is gone')
  t.equal((await me(bearer(token))).status, 401, 'so is the token')
})

// Raw sockets: fetch would normalise these before the gateway saw them.
t.test('no spelling of the path answers an anonymous caller with a user', async (t) => {
  for (const target of ['/auth/me', '/auth//me', '/auth/./me', '/auth/%6de', '/auth/me?x=1', '/auth/ME', '/auth/me/', '/auth/me;x', '/AUTH/me']) {
    for (const method of ['GET', 'HEAD', 'POST']) {
      const answer = await rawRequest(stack.url, method, target, [['Origin', 'http://localhost:3000'], ['Content-Type', 'application/json']], method === 'POST' ? '{}' : '')
      t.ok([400, 401, 404].includes(answer.status), `${method} ${target}: ${answer.status}`)
      t.notOk(answer.body.includes('"user"'), `${method} ${target}: no user in the body`)
    }
  }
})
