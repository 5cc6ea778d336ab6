import t from 'tap'
import { Writable } from 'node:stream'
import { decodeJwt } from 'jose'
import { startStack } from '../../../gateway/cli/stack.ts'
import { REDACT_PATHS } from '../../../shared/log.ts'
import { API_KEY_CLAIM } from '../../../shared/api-keys.ts'
import { gatewayOn, listenOn, postJson, testConfig, testDatabase, TEST_ORIGIN } from '../../helper.ts'
import { bearer, PASSWORD, signUp, validate } from '../../readers.ts'
import type { Reader } from '../../readers.ts'
import { lastBearer, recordingUpstream, stackWithUpstreams } from '../../upstream.ts'
import type { RecordingUpstream } from '../../upstream.ts'

/*
 * API keys through the gateway (issue 19): a signed-in reader makes a key in the browser
 * (`/auth/api-key/*`, better-auth's plugin at auth-core), a script sends it as `X-API-Key` or
 * `Authorization: Bearer agk_…`. The key opens its scope only, is counted on its own budget, names
 * its owner and itself (never the key) to the upstream, and stops at once when deleted or when its
 * owner is banned.
 */
const { stack, rag, app } = await stackWithUpstreams(t, { AUTH_RATE_LIMIT_MAX: '1000', ADMIN_REQUIRE_2FA: 'false' })

interface CreatedKey { id: string, key: string, name: string }
interface Answer { status: number, body: Record<string, unknown> }

async function createKey (reader: Reader, body: Record<string, unknown>, url = stack.url): Promise<CreatedKey> {
  const response = await postJson(reader.browser, `${url}/auth/api-key/create`, body)
  if (response.status !== 200) throw new Error(`create answered ${response.status}: ${await response.text()}`)
  return response.json() as Promise<CreatedKey>
}

async function answerOf (response: Response): Promise<Answer> {
  const text = await response.text()
  return { status: response.status, body: text === '' ? {} : JSON.parse(text) as Record<string, unknown> }
}

const keyHeader = (key: string): Record<string, string> => ({ 'x-api-key': key })

async function askRag (headers: Record<string, string>, url = stack.url): Promise<Answer> {
  return answerOf(await postJson(fetch, `${url}/api/v1/query`, { question: 'what is a monad?' }, headers))
}

async function get (path: string, headers: Record<string, string>, url = stack.url): Promise<Answer> {
  return answerOf(await fetch(`${url}${path}`, { headers }))
}

function headerValues (upstream: RecordingUpstream): string {
  return JSON.stringify(upstream.requests.at(-1)?.headers ?? {})
}

t.test('a key asks the RAG service as its owner; the upstream learns the key\'s id, never the key', async (t) => {
  const reader = await signUp(stack)
  const created = await createKey(reader, { name: 'notebook', scope: 'rag' })
  t.match(created.key, /^agk_[A-Za-z0-9]+$/)

  for (const headers of [keyHeader(created.key), bearer(created.key)]) {
    const asked = await askRag(headers)
    t.equal(asked.status, 200, `with ${Object.keys(headers)[0]}`)
    const received = rag.requests.at(-1)?.headers ?? {}
    t.equal(received['x-user-id'], reader.userId, 'the owner\'s identity')
    t.equal(received['x-api-key-id'], created.id, 'which key')
    t.notOk(headerValues(rag).includes(created.key), 'the key itself stays at the gateway')
    const claims = decodeJwt(lastBearer(rag))
    t.equal(claims.sub, reader.userId)
    t.equal(claims[API_KEY_CLAIM], created.id, 'the identity token names the key too')
  }

  // The owner's browser calls carry no key id.
  const browser = await postJson(reader.browser, `${stack.url}/api/v1/query`, { question: 'and now?' })
  t.equal(browser.status, 200)
  await browser.arrayBuffer()
  t.equal(rag.requests.at(-1)?.headers['x-api-key-id'], undefined)
  t.not(decodeJwt(lastBearer(rag))[API_KEY_CLAIM], created.id)
})

t.test('a key opens its scope only: rag the RAG routes, api every /api/* route, neither /auth/*', async (t) => {
  const reader = await signUp(stack)
  const ragKey = await createKey(reader, { name: 'rag only' })
  const apiKey = await createKey(reader, { name: 'everything', scope: 'api' })

  for (const path of ['/api/v1/profile', '/api/private', '/auth/me', '/auth/jwt', '/api/v1/sessions']) {
    const refused = await get(path, keyHeader(ragKey.key))
    t.equal(refused.status, 403, `rag key on ${path}`)
    t.match(refused.body, { error: 'api_key_out_of_scope', message: /"rag"/ })
  }
  // A public route that reads the caller is no way around it.
  const described = await get('/api/validate-session', keyHeader(ragKey.key))
  t.equal(described.status, 403, 'rag key on validate-session')

  const profile = await get('/api/v1/profile', keyHeader(apiKey.key))
  t.equal(profile.status, 200, 'api key on a session route')
  const appCall = await get('/api/private', keyHeader(apiKey.key))
  t.equal(appCall.status, 200, 'api key on the app upstream')
  t.equal(app.requests.at(-1)?.headers['x-user-id'], reader.userId)
  t.equal(app.requests.at(-1)?.headers['x-api-key-id'], apiKey.id)
  const who = await validate(stack.url, keyHeader(apiKey.key))
  t.equal(who.status, 200)
  t.equal(who.body.user?.id, reader.userId, 'validate-session names the owner')
  t.equal(who.body.session, null, 'and no session')
  for (const path of ['/auth/me', '/auth/jwt']) {
    const refused = await get(path, keyHeader(apiKey.key))
    t.equal(refused.status, 403, `api key on ${path}`)
  }
  // A key makes no keys, and cannot stand in for a session at auth-core.
  const more = await answerOf(await postJson(fetch, `${stack.url}/auth/api-key/create`, { name: 'another' }, { ...keyHeader(apiKey.key), origin: TEST_ORIGIN }))
  t.equal(more.status, 401, 'create with a key and no session')
  const writes = await answerOf(await fetch(`${stack.url}/api/v1/profile`, { method: 'PUT', headers: { ...keyHeader(apiKey.key), 'content-type': 'application/json' }, body: JSON.stringify({ displayName: 'Scripted' }) }))
  t.not(writes.status, 403, 'a key carries no ambient credential: no CSRF refusal without an Origin')
})

t.test('a key never carries its owner\'s role: an admin\'s key opens no admin route', async (t) => {
  const chief = await signUp(stack)
  await stack.pool.query('UPDATE "user" SET role = \'admin\' WHERE id = $1', [chief.userId])
  const key = await createKey(chief, { name: 'admin script', scope: 'api' })
  const session = await fetch(`${stack.url}/api/v1/admin/audit`, { headers: { cookie: chief.cookie } })
  t.equal(session.status, 200, 'the admin\'s session opens the audit log')
  await session.arrayBuffer()
  const refused = await get('/api/v1/admin/audit', keyHeader(key.key))
  t.equal(refused.status, 403, 'the admin\'s key does not')
  const asked = await askRag(keyHeader(key.key))
  t.equal(asked.status, 200)
  t.equal(decodeJwt(lastBearer(rag)).role, undefined, 'nor does the upstream hear the role')
  const who = await validate(stack.url, keyHeader(key.key))
  t.equal(who.body.user?.role, undefined)
})

t.test('a key that opens nothing is refused on every route that reads the caller, public ones too', async (t) => {
  const shapes = ['agk_' + 'x'.repeat(64), 'agk_', 'agk_has-dash', 'agk_' + 'a'.repeat(300), 'not-a-key', 'agk_a, agk_b']
  for (const key of shapes) {
    const asked = await askRag(keyHeader(key))
    t.equal(asked.status, 401, `RAG with ${key.slice(0, 12)}…`)
    t.match(asked.body, { error: 'invalid_api_key', message: String })
  }
  t.equal((await askRag(bearer('agk_' + 'y'.repeat(64)))).status, 401, 'as a bearer token too')
  // A route that never reads the caller does not look at it.
  t.equal((await get('/health', keyHeader('agk_unknown'))).status, 200)
})

t.test('deleted, disabled, or its owner banned: refused at once, although the key was cached', async (t) => {
  const reader = await signUp(stack)
  const deleted = await createKey(reader, { name: 'to delete' })
  const disabled = await createKey(reader, { name: 'to disable' })
  const kept = await createKey(reader, { name: 'kept' })
  for (const key of [deleted, disabled, kept]) t.equal((await askRag(keyHeader(key.key))).status, 200, `${key.name} works`)

  const gone = await postJson(reader.browser, `${stack.url}/auth/api-key/delete`, { keyId: deleted.id })
  t.equal(gone.status, 200)
  t.equal(gone.headers.get('x-auth-gateway-revoked-api-key'), null, 'the internal header stays inside')
  await gone.arrayBuffer()
  t.equal((await askRag(keyHeader(deleted.key))).status, 401, 'deleted')
  const off = await postJson(reader.browser, `${stack.url}/auth/api-key/update`, { keyId: disabled.id, enabled: false })
  t.equal(off.status, 200)
  await off.arrayBuffer()
  t.equal((await askRag(keyHeader(disabled.key))).status, 401, 'disabled')
  const on = await postJson(reader.browser, `${stack.url}/auth/api-key/update`, { keyId: disabled.id, enabled: true })
  await on.arrayBuffer()
  t.equal((await askRag(keyHeader(disabled.key))).status, 200, 'enabled again: works at once')

  // Sign out everywhere: sessions and tokens end, keys do not.
  const revoked = await postJson(reader.browser, `${stack.url}/auth/revoke-sessions`, {})
  t.equal(revoked.status, 200)
  await revoked.arrayBuffer()
  t.equal((await askRag(keyHeader(kept.key))).status, 200, 'a key outlives sign-out everywhere')

  const chief = await signUp(stack)
  await stack.pool.query('UPDATE "user" SET role = \'admin\' WHERE id = $1', [chief.userId])
  const adminIn = await postJson(chief.browser, `${stack.url}/auth/sign-in/email`, { email: chief.email, password: PASSWORD })
  await adminIn.arrayBuffer()
  const banned = await postJson(chief.browser, `${stack.url}/auth/admin/ban-user`, { userId: reader.userId, banReason: 'leaked keys' })
  t.equal(banned.status, 200)
  await banned.arrayBuffer()
  t.equal((await askRag(keyHeader(kept.key))).status, 401, 'the owner banned: the key opens nothing')
})

t.test('another reader cannot delete your key; a foreign page cannot make one with your cookie', async (t) => {
  const owner = await signUp(stack)
  const other = await signUp(stack)
  const key = await createKey(owner, { name: 'mine' })
  const stolen = await postJson(other.browser, `${stack.url}/auth/api-key/delete`, { keyId: key.id })
  t.ok(stolen.status >= 400 && stolen.status < 500, `another reader: 4xx (got ${stolen.status})`)
  await stolen.arrayBuffer()
  t.equal((await askRag(keyHeader(key.key))).status, 200, 'the key still works')
  const foreign = await postJson(fetch, `${stack.url}/auth/api-key/create`, { name: 'csrf' }, { cookie: owner.cookie, origin: 'http://evil.example' })
  t.equal(foreign.status, 403, 'a foreign origin')
  await foreign.arrayBuffer()
})

t.test('each key has its own budget: the 4th call of a 3-call budget is a 429, the owner\'s other key and browser go on', async (t) => {
  const gateway = await gatewayOn(t, stack, { RAG_UPSTREAM_URL: rag.url, API_KEY_RATE_LIMIT: '3', RAG_RATE_LIMIT_USER: '100' })
  const url = await listenOn(gateway)
  const reader = await signUp(stack)
  const first = await createKey(reader, { name: 'busy' })
  const second = await createKey(reader, { name: 'quiet' })
  const statuses: number[] = []
  for (let call = 0; call < 4; call++) statuses.push((await askRag(keyHeader(first.key), url)).status)
  t.same(statuses, [200, 200, 200, 429])
  const limited = await postJson(fetch, `${url}/api/v1/query`, {}, keyHeader(first.key))
  t.match(await limited.json(), { error: 'rate_limited' })
  t.match(limited.headers.get('retry-after'), /^\d+$/)
  t.equal((await askRag(keyHeader(second.key), url)).status, 200, 'another key of the same owner')
  const browser = await postJson(reader.browser, `${url}/api/v1/query`, { question: 'from the page' })
  t.equal(browser.status, 200, 'the owner\'s own chatbot budget is untouched')
  await browser.arrayBuffer()
})

t.test('a key is never logged: not made, not used, not refused', async (t) => {
  const lines: string[] = []
  const stream = new Writable({ write (chunk: Buffer, _encoding, done) { lines.push(...chunk.toString('utf8').split('\n').filter((l) => l !== '')); done() } })
  const upstream = await recordingUpstream(t)
  const config = testConfig(t, { DATABASE_URL: await testDatabase(t), LOG_LEVEL: 'debug', RAG_UPSTREAM_URL: upstream.url })
  const logged = await startStack(config, { logger: { level: 'debug', stream, redact: { paths: [...REDACT_PATHS], censor: '[redacted]' } } })
  t.teardown(() => logged.close())
  const reader = await signUp(logged)
  const key = await createKey(reader, { name: 'secret' }, logged.url)
  t.equal((await askRag(keyHeader(key.key), logged.url)).status, 200)
  t.equal((await askRag(bearer(key.key), logged.url)).status, 200)
  const deleted = await postJson(reader.browser, `${logged.url}/auth/api-key/delete`, { keyId: key.id })
  await deleted.arrayBuffer()
  t.equal((await askRag(keyHeader(key.key), logged.url)).status, 401)
  t.ok(lines.length > 5, 'the stack logged')
  const all = lines.join('\n')
  t.notOk(all.includes(key.key), 'the key is in no log line')
  t.notOk(all.includes(key.key.slice(4, 20)), 'nor any part of it')
})
