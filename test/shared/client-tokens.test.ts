import t from 'tap'
import { createGatewayClient, createTokenClient } from '@auth-gateway/client'
import type { TokenSession } from '@auth-gateway/client'
import { postJson, uniqueEmail } from '../helper.ts'
import { PASSWORD, signUp } from '../readers.ts'
import { stackWithUpstreams } from '../upstream.ts'

/*
 * The package's token client against the real stack, as a script uses it (Node's fetch: no cookie
 * jar, no Origin): login, calls that refresh by themselves, concurrent calls that share one
 * refresh (two would end the login as a reuse), the session kept and restored, logout, an API key.
 */
const { stack, rag } = await stackWithUpstreams(t, { AUTH_RATE_LIMIT_MAX: '1000' })

/** Counts the refreshes a client makes, passing every call on to the real fetch. */
function countingFetch (): { fetch: typeof fetch, refreshes: () => number } {
  let refreshes = 0
  return {
    fetch: async (input, init) => {
      if (String(input).endsWith('/auth/token/refresh')) refreshes += 1
      return fetch(input, init)
    },
    refreshes: () => refreshes
  }
}

t.test('options are checked where they enter', async (t) => {
  t.throws(() => createTokenClient({ baseURL: 'api.example.com' }), { name: 'TypeError', message: /baseURL must be an http\(s\) URL/ })
  t.throws(() => createTokenClient({ baseURL: 'https://api.example.com', apiKey: '' }), TypeError)
})

t.test('sign up, me, RAG with identity, logout: the token is refused at once after', async (t) => {
  const sessions: Array<TokenSession | null> = []
  const client = createTokenClient({ baseURL: stack.url, onSession: (session) => { sessions.push(session) } })
  const email = uniqueEmail('script')
  const made = await client.signUp({ email, password: PASSWORD, name: 'Script' })
  t.equal(made.error, null)
  t.ok(client.session !== null && 'token' in (made.data ?? {}), 'signed in by the sign-up')
  const me = await client.me()
  t.equal(me.data?.user.email, email)
  const asked = await client.rag.query({ question: 'what is a monad?' })
  t.equal(asked.error, null)
  t.equal(rag.requests.at(-1)?.headers['x-user-id'], me.data?.user.id)
  const token = client.session?.token ?? ''
  t.same(await client.logout(), { data: null, error: null })
  t.equal(client.session, null)
  t.equal(sessions.at(-1), null, 'told the keeper it ended')
  const after = await fetch(`${stack.url}/auth/me`, { headers: { authorization: `Bearer ${token}` } })
  t.equal(after.status, 401, 'the old access token')
  await after.arrayBuffer()
  t.match(await client.me(), { data: null, error: { error: 'unauthorized', status: 401 } })
})

t.test('a token about to expire is refreshed before the call; concurrent calls share one refresh', async (t) => {
  const reader = await signUp(stack)
  const counting = countingFetch()
  const client = createTokenClient({ baseURL: stack.url, fetch: counting.fetch })
  t.equal((await client.login(reader.email, PASSWORD)).error, null)
  const first = client.session as TokenSession
  t.equal((await client.me()).error, null)
  t.equal(counting.refreshes(), 0, 'no refresh while the token is fresh')

  // The session kept as if fourteen and a half minutes had passed: within the minute's margin.
  let offset = 0
  const later = createTokenClient({ baseURL: stack.url, fetch: counting.fetch, session: { ...first, expiresAt: new Date(Date.now() + 30_000).toISOString() }, now: () => Date.now() + offset })
  const answers = await Promise.all([later.me(), later.rag.query({ q: 1 }), later.me(), later.rag.select({ q: 2 })])
  t.same(answers.map((answer) => answer.error), [null, null, null, null], 'every call succeeds')
  t.equal(counting.refreshes(), 1, 'one refresh for four calls')
  const second = later.session as TokenSession
  t.not(second.refreshToken, first.refreshToken, 'rotated')
  t.not(second.token, first.token)
  // A minute and a half later the new token is still fresh: no refresh.
  offset = 90_000
  t.equal((await later.me()).error, null)
  t.equal(counting.refreshes(), 1)

  // The old refresh token is dead, and presenting it ended the login (theft detection)…
  const reused = await postJson(fetch, `${stack.url}/auth/token/refresh`, { refreshToken: first.refreshToken })
  t.equal(reused.status, 401)
  await reused.arrayBuffer()
  // …which the client learns at its next call: the token is refused, and so is the refresh.
  t.match(await later.me(), { data: null, error: { status: 401 } })
  t.equal(later.session, null, 'the client forgot the ended login')
})

t.test('a kept session goes on in a new client; a refused token is refreshed once and the call made again', async (t) => {
  const reader = await signUp(stack)
  let kept: TokenSession | null = null
  const first = createTokenClient({ baseURL: stack.url, onSession: (session) => { kept = session } })
  t.equal((await first.login(reader.email, PASSWORD)).error, null)
  t.ok(kept !== null)
  const session = kept as unknown as TokenSession
  // The kept access token is forged (say, signed with a key since rotated): the gateway refuses it.
  const counting = countingFetch()
  const restored = createTokenClient({ baseURL: stack.url, fetch: counting.fetch, session: { ...session, token: `${session.token}x` } })
  const me = await restored.me()
  t.equal(me.error, null, 'refreshed and asked again')
  t.equal(me.data?.user.id, reader.userId)
  t.equal(counting.refreshes(), 1)
})

t.test('an API key: made, listed and deleted in the browser; no login, X-API-Key on every call', async (t) => {
  const reader = await signUp(stack)
  const browser = createGatewayClient({ baseURL: stack.url, fetch: reader.browser })
  const created = await browser.apiKeys.create({ name: 'client', scope: 'rag' })
  t.equal(created.error, null)
  const { key, id } = created.data ?? { key: '', id: '' }
  const listed = await browser.apiKeys.list()
  t.same(listed.data?.apiKeys.map((item) => [item.id, item.name, item.permissions]), [[id, 'client', { gateway: ['rag'] }]])
  t.notOk(JSON.stringify(listed.data).includes(key), 'the list never shows the key')
  const client = createTokenClient({ baseURL: stack.url, apiKey: key })
  const asked = await client.rag.query({ question: 'from a key' })
  t.equal(asked.error, null)
  t.equal(rag.requests.at(-1)?.headers['x-api-key-id'], id)
  t.match(await client.call('GET', '/api/v1/profile'), { error: { error: 'api_key_out_of_scope', status: 403 } })
  t.match(await browser.apiKeys.delete(id), { data: { success: true }, error: null })
  t.match(await client.rag.query({ question: 'again' }), { data: null, error: { error: 'invalid_api_key', status: 401 } })
})
