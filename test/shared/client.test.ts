import t from 'tap'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { jwtVerify } from 'jose'
import { createGatewayClient } from '@auth-gateway/client'
import type { GatewayError } from '@auth-gateway/client'
import { cookieFetch, JWT_TEST_SECRET, startTestStack, uniqueEmail, verifyIdentityToken } from '../helper.ts'
import { recordingUpstream } from '../upstream.ts'

const PASSWORD = 'correct horse battery'
const CONSENT_MESSAGE = 'Consent must be given to store background information'
const FULL = { softwareBackground: 'TypeScript', hardwareBackground: 'Jetson Nano', interestArea: 'humanoids', consentGiven: true }
const ANSWER = { answer: 'A humanoid balances by keeping its zero-moment point inside the support polygon.' }

/** A loopback port nothing listens on. */
async function closedPort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise<void>((resolve) => server.close(() => { resolve() }))
  return port
}

t.test('options are checked where they enter', async (t) => {
  t.throws(() => createGatewayClient({ baseURL: 'localhost:8000' }), { name: 'TypeError', message: /baseURL must be an http\(s\) URL/ })
  t.throws(() => createGatewayClient({ baseURL: '' }), TypeError)
  t.doesNotThrow(() => createGatewayClient({ baseURL: 'https://api.example.com/' }))
})

t.test('failures are values, never thrown', async (t) => {
  const port = await closedPort()
  const offline = createGatewayClient({ baseURL: `http://127.0.0.1:${port}` })
  for (const [name, call] of [
    ['profile.get', () => offline.profile.get()],
    ['profile.save', () => offline.profile.save(FULL)],
    ['profile.delete', () => offline.profile.delete()],
    ['rag.query', () => offline.rag.query({ question: 'x' })],
    ['rag.select', () => offline.rag.select({ text: 'x' })],
    ['token', () => offline.token()]
  ] as const) {
    const { data, error } = await call()
    t.equal(data, null, name)
    t.match(error, { error: 'network_error', status: 0, message: /^The gateway could not be reached/ }, name)
  }

  const stub = (response: () => Response): typeof fetch => async () => response()
  const html = createGatewayClient({ baseURL: 'http://gateway.test', fetch: stub(() => new Response('<h1>Bad Gateway</h1>', { status: 502, statusText: 'Bad Gateway', headers: { 'content-type': 'text/html' } })) })
  t.same((await html.profile.get()).error, { error: 'unexpected_response', message: 'The gateway answered 502 Bad Gateway', status: 502 })

  const broken = createGatewayClient({ baseURL: 'http://gateway.test', fetch: stub(() => new Response('{"trunc', { status: 200, headers: { 'content-type': 'application/json' } })) })
  t.match((await broken.rag.query({})).error, { error: 'unexpected_response', status: 200 })

  const requests: Array<{ url: string, init: RequestInit | undefined }> = []
  const recording = createGatewayClient({
    baseURL: 'http://gateway.test///',
    fetch: async (input, init) => {
      requests.push({ url: String(input), init })
      return Response.json({ error: 'rate_limited', message: 'Too many requests' }, { status: 429 })
    }
  })
  t.same((await recording.rag.select({ text: 'x' })).error, { error: 'rate_limited', message: 'Too many requests', status: 429 })
  t.equal(requests[0].url, 'http://gateway.test/api/v1/select', 'trailing slashes of baseURL are dropped')
  t.equal(requests[0].init?.credentials, 'include')
  t.equal(requests[0].init?.body, '{"text":"x"}')
})

t.test('against the real stack: sign-up, profile, RAG, token, sign-out', async (t) => {
  const rag = await recordingUpstream(t, () => ({ body: ANSWER }))
  const stack = await startTestStack(t, { RAG_UPSTREAM_URL: rag.url })
  const browser = cookieFetch()
  const client = createGatewayClient({ baseURL: stack.url, fetch: browser })
  const unauthorized = (error: GatewayError | null): void => {
    t.match(error, { error: 'unauthorized', status: 401, message: String })
  }

  await t.test('anonymous: RAG works without identity, profile and token are refused', async (t) => {
    const answer = await client.rag.query<typeof ANSWER>({ question: 'How does a humanoid balance?' })
    t.same(answer, { data: ANSWER, error: null })
    const recorded = rag.requests.at(-1)
    t.equal(recorded?.url, '/api/v1/query')
    t.same(JSON.parse(recorded?.body ?? ''), { question: 'How does a humanoid balance?' })
    t.notOk(recorded?.headers['x-user-id'])
    t.notOk(recorded?.headers.authorization)
    unauthorized((await client.profile.get()).error)
    unauthorized((await client.token()).error)
    unauthorized((await client.profile.delete()).error)
  })

  const email = uniqueEmail()
  const signUp = await client.auth.signUp.email({ email, password: PASSWORD, name: 'Ada' })
  t.equal(signUp.error, null, 'sign-up through client.auth')
  const userId = signUp.data?.user.id ?? ''
  t.ok(userId)
  t.ok(browser.cookies.size > 0, 'the session cookie was kept')

  await t.test('the session is readable through client.auth', async (t) => {
    const { data, error } = await client.auth.getSession()
    t.equal(error, null)
    t.equal(data?.user.email, email)
  })

  await t.test('profile: consent refused, then save, get, delete', async (t) => {
    const empty = await client.profile.get()
    t.match(empty, { data: { softwareBackground: null, consentGiven: false }, error: null })

    const refused = await client.profile.save({ softwareBackground: 'Rust' })
    t.same(refused, { data: null, error: { error: 'consent_required', message: CONSENT_MESSAGE, status: 400 } })

    const invalid = await client.profile.save({ interestArea: 'x'.repeat(100_000), consentGiven: true })
    t.equal(invalid.data, null)
    t.match(invalid.error, { status: 413, error: String, message: String }, 'a body over the limit is a typed error too')

    const saved = await client.profile.save(FULL)
    t.equal(saved.error, null)
    t.match(saved.data, { ...FULL, consentVersion: '1' })
    t.same((await client.profile.get()).data, saved.data)

    t.same(await client.profile.delete(), { data: null, error: null })
    t.match((await client.profile.get()).data, { softwareBackground: null, consentGiven: false })
  })

  await t.test('RAG calls carry the reader identity', async (t) => {
    for (const [call, path] of [[client.rag.query, '/api/v1/query'], [client.rag.select, '/api/v1/select']] as const) {
      const result = await call({ question: 'What is ROS 2?' })
      t.same(result, { data: ANSWER, error: null }, path)
      const recorded = rag.requests.at(-1)
      t.equal(recorded?.url, path)
      t.equal(recorded?.headers['x-user-id'], userId)
      const bearer = /^Bearer (.+)$/.exec(recorded?.headers.authorization ?? '')
      t.ok(bearer, 'a bearer token is attached')
      const { payload } = await verifyIdentityToken(stack.url, bearer?.[1] ?? '', 'rag')
      t.equal(payload.sub, userId)
      t.equal(payload.email, email)
    }
  })

  await t.test('token() returns a verifiable JWT for the reader', async (t) => {
    const { data, error } = await client.token()
    t.equal(error, null)
    t.type(data?.token, 'string')
    t.ok(Number.isFinite(Date.parse(String(data?.expiresAt))), 'expiresAt is a date')
    const { payload } = await jwtVerify(data?.token ?? '', new TextEncoder().encode(JWT_TEST_SECRET), { issuer: 'better-auth', algorithms: ['HS256'] })
    t.equal(payload.sub, userId)
    t.equal(payload.email, email)
  })

  await t.test('after sign-out: anonymous again', async (t) => {
    const signOut = await client.auth.signOut()
    t.equal(signOut.error, null)
    t.equal((await client.auth.getSession()).data, null)
    unauthorized((await client.profile.get()).error)
    unauthorized((await client.token()).error)
    t.same((await client.rag.query({ question: 'still there?' })).data, ANSWER)
    t.notOk(rag.requests.at(-1)?.headers['x-user-id'])
    t.notOk(rag.requests.at(-1)?.headers.authorization)
  })
})
