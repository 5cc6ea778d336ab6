import t from 'tap'
import type { Test } from 'tap'
import { Writable } from 'node:stream'
import { buildGateway } from '../../../gateway/app.ts'
import { REDACT_PATHS } from '../../../shared/log.ts'
import { listenOn, postJson, testConfig, TEST_ORIGIN, uniqueEmail } from '../../helper.ts'
import { bearer, issueToken, PASSWORD, signUp } from '../../readers.ts'
import type { Reader } from '../../readers.ts'
import { rawRequest } from '../../raw-http.ts'
import type { RawResponse } from '../../raw-http.ts'
import { stackWithUpstreams } from '../../upstream.ts'

/*
 * API keys and token logins, as an attacker tries them: crafted requests over real HTTP on loopback
 * (fetch, or a raw socket where fetch would tidy the request up). Every attempt must be refused with
 * a 4xx in the gateway's `{ error, message }` and never a 5xx; the routes a key does open are
 * checked only to make sure a refusal is about the attack and not a broken key.
 */
const { stack, rag, app } = await stackWithUpstreams(t, { AUTH_RATE_LIMIT_MAX: '1000', ADMIN_REQUIRE_2FA: 'false' })

interface CreatedKey { id: string, key: string, name: string, expiresAt: string | null }
interface Answer { status: number, body: Record<string, unknown>, headers: Headers }
interface Tokens { token: string, refreshToken: string, user: { id: string } }

function parsed (text: string): Record<string, unknown> {
  if (text === '') return {}
  try {
    const value = JSON.parse(text) as unknown
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? value as Record<string, unknown> : { value }
  } catch {
    return { text }
  }
}

async function answerOf (response: Response): Promise<Answer> {
  return { status: response.status, body: parsed(await response.text()), headers: response.headers }
}

async function createKey (reader: Reader, body: Record<string, unknown>): Promise<CreatedKey> {
  const response = await postJson(reader.browser, `${stack.url}/auth/api-key/create`, body)
  if (response.status !== 200) throw new Error(`create answered ${response.status}: ${await response.text()}`)
  return response.json() as Promise<CreatedKey>
}

async function get (path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Answer> {
  return answerOf(await fetch(`${stack.url}${path}`, { method, headers }))
}

async function post (path: string, body: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  return answerOf(await postJson(fetch, `${stack.url}${path}`, body, headers))
}

async function raw (method: string, target: string, headers: Array<[string, string]> = [], body = ''): Promise<RawResponse> {
  return rawRequest(stack.url, method, target, headers, body)
}

async function askRag (headers: Record<string, string>): Promise<Answer> {
  return post('/api/v1/query', { question: 'what is a monad?' }, headers)
}

async function login (email: string): Promise<Tokens> {
  const answer = await post('/auth/login', { email, password: PASSWORD })
  if (answer.status !== 200) throw new Error(`login answered ${answer.status}: ${JSON.stringify(answer.body)}`)
  return answer.body as unknown as Tokens
}

async function meStatus (token: string): Promise<number> {
  return (await get('/auth/me', bearer(token))).status
}

const keyHeader = (key: string): Record<string, string> => ({ 'x-api-key': key })

/** A refusal in the gateway's format: a 4xx with `{ error, message }`. */
function refused (t: Test, answer: { status: number, body: Record<string, unknown> | string }, label: string, status?: number, error?: string): void {
  const body = typeof answer.body === 'string' ? parsed(answer.body) : answer.body
  const detail = `${label}: ${answer.status} ${JSON.stringify(body).slice(0, 200)}`
  if (status === undefined) t.ok(answer.status >= 400 && answer.status < 500, `${detail} is a 4xx`)
  else t.equal(answer.status, status, detail)
  t.type(body.error, 'string', `${label}: has an error code`)
  t.type(body.message, 'string', `${label}: has a message`)
  if (error !== undefined) t.equal(body.error, error, `${label}: ${error}`)
}

// One reader with one key of each scope, and a reader who is an admin, shared by the tests below.
const owner = await signUp(stack)
const ragKey = await createKey(owner, { name: 'rag key' })
const apiKey = await createKey(owner, { name: 'api key', scope: 'api' })

t.test('a rag key opens no other route, whatever the spelling of its path or method', async (t) => {
  t.equal((await askRag(keyHeader(ragKey.key))).status, 200, 'the key works where it should')
  const before = { rag: rag.requests.length, app: app.requests.length }
  const targets: Array<[string, string]> = [
    ['GET', '/api/v1/profile'],
    ['HEAD', '/api/v1/profile'],
    ['GET', '/api/v1/profile/'],
    ['GET', '/api/v1//profile'],
    ['GET', '/api/v1/./profile'],
    ['GET', '/api/v1/query/../profile'],
    ['GET', '/api/v1/%70rofile'],
    ['GET', '/api/v1/%2570rofile'],
    ['GET', '/api/v1/profile%2F'],
    ['GET', '/api/v1/query/..%2Fprofile'],
    ['GET', '/api/v1/query/%2e%2e/profile'],
    ['GET', '/api/v1/query;/../profile'],
    ['GET', '/api/v1/profile/export'],
    ['GET', '/api/v1/profile?x=/api/v1/query'],
    ['GET', '/api/v1/profile#/api/v1/query'],
    ['GET', '/api/private'],
    ['HEAD', '/api/private'],
    ['GET', '/api/private/'],
    ['GET', '//api/private'],
    ['GET', '/api/%70rivate'],
    ['GET', '/API/private'],
    ['DELETE', '/api/v1/profile'],
    ['POST', '/api/private'],
    ['GET', '/api/v1/query'],
    ['GET', '/api/v1/query/'],
    ['POST', '/api/v1/query/'],
    ['POST', '/api/v1/Query'],
    ['POST', '/api/v1/query/x'],
    ['GET', '/api/validate-session'],
    ['GET', '/api/validate-session/'],
    ['GET', '/api/v1/sessions'],
    ['DELETE', '/api/v1/sessions/abc'],
    ['GET', '/api/v1/admin/audit'],
    ['GET', '/auth/jwt'],
    ['HEAD', '/auth/jwt'],
    ['GET', '/auth/me'],
    ['HEAD', '/auth/me'],
    ['GET', '/auth//me'],
    ['GET', '/auth/%6De'],
    ['GET', '/auth/./jwt'],
    ['GET', '/api/../auth/jwt'],
    ['GET', `http://${new URL(stack.url).host}/api/private`],
    ['GET', `http://${new URL(stack.url).host}/auth/jwt`]
  ]
  for (const [method, target] of targets) {
    const body = method === 'POST' ? '{"question":"x"}' : ''
    const answer = await raw(method, target, [['X-API-Key', ragKey.key], ['Content-Type', 'application/json']], body)
    const label = `${method} ${target}`
    if (method === 'HEAD') {
      t.ok(answer.status >= 400 && answer.status < 500, `${label}: ${answer.status} is a 4xx`)
      continue
    }
    refused(t, answer, label)
    t.not(answer.status, 500)
    if (answer.status === 403) t.equal(parsed(answer.body).error, 'api_key_out_of_scope', `${label}: out of scope`)
  }
  t.same({ rag: rag.requests.length, app: app.requests.length }, before, 'neither upstream was reached')
})

t.test('an api key opens /api/* but never /auth/*, an admin route or the owner\'s sessions', async (t) => {
  t.equal((await get('/api/private', keyHeader(apiKey.key))).status, 200, 'the key works where it should')
  for (const path of ['/auth/jwt', '/auth/me', '/auth/jwt?x=1']) {
    for (const headers of [keyHeader(apiKey.key), bearer(apiKey.key), { ...keyHeader(apiKey.key), cookie: owner.cookie }]) {
      refused(t, await get(path, headers), `${path} with ${Object.keys(headers).join('+')}`, 403, 'api_key_out_of_scope')
    }
  }
  // Sessions are the cookie's: a key names no session, even on the api scope.
  refused(t, await get('/api/v1/sessions', keyHeader(apiKey.key)), 'list sessions with a key', 400, 'session_cookie_required')
  refused(t, await get('/api/v1/sessions/abc', keyHeader(apiKey.key), 'DELETE'), 'end a session with a key', 400, 'session_cookie_required')

  // The key is never sent on to auth-core: there, it is nobody.
  const writes: Array<[string, Record<string, unknown>]> = [
    ['/auth/api-key/create', { name: 'more', scope: 'api' }],
    ['/auth/api-key/update', { keyId: apiKey.id, enabled: false }],
    ['/auth/api-key/delete', { keyId: apiKey.id }],
    ['/auth/revoke-sessions', {}],
    ['/auth/update-user', { name: 'Pwned' }],
    ['/auth/change-email', { newEmail: uniqueEmail('moved') }],
    ['/auth/two-factor/enable', { password: PASSWORD }]
  ]
  for (const [path, body] of writes) {
    for (const headers of [keyHeader(apiKey.key), bearer(apiKey.key)]) {
      const answer = await post(path, body, { ...headers, origin: TEST_ORIGIN })
      refused(t, answer, `POST ${path} with ${Object.keys(headers)[0]}`, 401)
    }
  }
  t.equal((await get('/api/private', keyHeader(apiKey.key))).status, 200, 'the key was neither disabled nor deleted by itself')
  for (const path of ['/auth/api-key/list', '/auth/list-sessions', '/auth/jwt/', '/auth//jwt/']) {
    const answer = await get(path, keyHeader(apiKey.key))
    t.ok(answer.status >= 400 && answer.status < 500, `GET ${path}: ${answer.status}`)
    t.notOk(JSON.stringify(answer.body).includes(owner.userId), `GET ${path} names nobody`)
  }
  for (const path of ['/auth/get-session', '/auth/session']) {
    const answer = await get(path, keyHeader(apiKey.key))
    t.not(answer.status, 500)
    t.notOk(JSON.stringify(answer.body).includes(owner.userId), `GET ${path} with a key: no session`)
  }
  const patched = await answerOf(await fetch(`${stack.url}/auth/user/profile`, { method: 'PATCH', headers: { ...keyHeader(apiKey.key), 'content-type': 'application/json', origin: TEST_ORIGIN }, body: '{"name":"Pwned"}' }))
  refused(t, patched, 'PATCH /auth/user/profile with a key', 401)
  const logout = await post('/auth/logout', {}, bearer(apiKey.key))
  refused(t, logout, 'logout with a key as the bearer', 401, 'invalid_token')

  // An admin's key is no admin.
  const chief = await signUp(stack)
  await stack.pool.query('UPDATE "user" SET role = \'admin\' WHERE id = $1', [chief.userId])
  const chiefKey = await createKey(chief, { name: 'admin', scope: 'api' })
  for (const path of ['/auth/admin/list-users', '/api/v1/admin/audit']) {
    refused(t, await get(path, keyHeader(chiefKey.key)), `GET ${path} with an admin's key`, 403)
  }
  // Other spellings of the audit route are other routes: the app upstream's catch-all, which the key
  // opens (scope api), with no role told to the upstream. The audit log itself is never served.
  for (const path of ['/api/v1/admin/audit/', '/api/v1/Admin/audit', '/api/v1/admin/AUDIT']) {
    const answer = await get(path, keyHeader(chiefKey.key))
    t.equal(answer.status, 200, `${path}: the app upstream's`)
    t.same(answer.body, { answer: 'ok', path }, `${path}: answered by the app upstream, not the audit log`)
    t.equal(app.requests.at(-1)?.headers['x-api-key-id'], chiefKey.id)
  }
  const banned = await post('/auth/admin/ban-user', { userId: owner.userId }, { ...keyHeader(chiefKey.key), origin: TEST_ORIGIN })
  refused(t, banned, 'ban a user with an admin\'s key', 403)
  t.equal((await askRag(keyHeader(ragKey.key))).status, 200, 'the owner is not banned')
})

t.test('headers: a key beside a bearer token or a cookie, twice, padded, long, odd', async (t) => {
  const other = await signUp(stack)
  const otherTokens = await login(other.email)
  // A key wins over a bearer token and a cookie: a rag key with a valid bearer or cookie does not open the profile.
  for (const headers of [{ ...keyHeader(ragKey.key), ...bearer(otherTokens.token) }, { ...keyHeader(ragKey.key), cookie: other.cookie }, { ...bearer(ragKey.key), cookie: other.cookie }]) {
    refused(t, await get('/api/v1/profile', headers), `rag key + ${Object.keys(headers).join('+')}`, 403, 'api_key_out_of_scope')
  }
  // A key that opens nothing is no way to fall back to the bearer token or the cookie.
  for (const bad of ['', ' ', 'agk_', 'agk_nope', `${ragKey.key}x`, ragKey.key.slice(0, -1), ragKey.key.toUpperCase(), `Bearer ${ragKey.key}`]) {
    for (const fallback of [bearer(otherTokens.token), { cookie: other.cookie }]) {
      refused(t, await get('/api/v1/profile', { ...fallback, 'x-api-key': bad }), `x-api-key "${bad.slice(0, 12)}" + ${Object.keys(fallback)[0]}`, 401, 'invalid_api_key')
    }
  }
  // Two keys in one request: the header arrives joined and is no key.
  const twice = await raw('POST', '/api/v1/query', [['X-API-Key', ragKey.key], ['X-API-Key', apiKey.key], ['Content-Type', 'application/json']], '{"question":"x"}')
  refused(t, twice, 'X-API-Key twice', 401, 'invalid_api_key')
  const sameTwice = await raw('POST', '/api/v1/query', [['X-API-Key', ragKey.key], ['x-api-key', ragKey.key], ['Content-Type', 'application/json']], '{"question":"x"}')
  refused(t, sameTwice, 'the same X-API-Key twice', 401, 'invalid_api_key')
  const joined = await raw('POST', '/api/v1/query', [['X-API-Key', `${ragKey.key},${apiKey.key}`], ['Content-Type', 'application/json']], '{"question":"x"}')
  refused(t, joined, 'two keys joined by a comma', 401, 'invalid_api_key')
  // A key in X-API-Key and another as the bearer: the header decides, the bearer key gains nothing.
  refused(t, await get('/api/private', { ...keyHeader(ragKey.key), ...bearer(apiKey.key) }), 'rag key header + api key bearer', 403, 'api_key_out_of_scope')
  // Authorization twice: Node keeps the first (it drops a repeated Authorization), so the first key
  // decides alone; a rag key first is not widened by an api key after it.
  const twoAuthorizations = await raw('GET', '/api/private', [['Authorization', `Bearer ${ragKey.key}`], ['Authorization', `Bearer ${apiKey.key}`]])
  refused(t, twoAuthorizations, 'Authorization twice, the rag key first', 403, 'api_key_out_of_scope')
  const keyThenToken = await raw('GET', '/api/v1/profile', [['Authorization', `Bearer ${ragKey.key}`], ['Authorization', `Bearer ${otherTokens.token}`]])
  refused(t, keyThenToken, 'Authorization twice, a rag key then a login token', 403, 'api_key_out_of_scope')

  // Whitespace: around the key is no part of it (HTTP's own rule); inside, it is no key.
  const padded = await raw('POST', '/api/v1/query', [['X-API-Key', `  ${ragKey.key}\t`], ['Content-Type', 'application/json']], '{"question":"x"}')
  t.equal(padded.status, 200, 'padding around the key is HTTP\'s, not the key\'s')
  for (const spaced of [`${ragKey.key.slice(0, 10)} ${ragKey.key.slice(10)}`, `${ragKey.key.slice(0, 10)}\t${ragKey.key.slice(10)}`, `agk_ ${ragKey.key.slice(4)}`]) {
    refused(t, await raw('POST', '/api/v1/query', [['X-API-Key', spaced], ['Content-Type', 'application/json']], '{"question":"x"}'), 'whitespace inside the key', 401, 'invalid_api_key')
  }
  // A malformed Authorization is no credential: anonymous on the public RAG route, refused on the others.
  t.equal((await askRag({ authorization: `Bearer ${ragKey.key} ${ragKey.key}` })).status, 200, 'two keys in one bearer: anonymous')
  t.equal(rag.requests.at(-1)?.headers['x-user-id'], undefined, 'and names nobody')
  refused(t, await get('/api/private', { authorization: `Bearer ${apiKey.key} ${apiKey.key}` }), 'two keys in one bearer on a session route', 401, 'unauthorized')
  t.equal((await askRag({ authorization: `bearer   ${ragKey.key}` })).status, 200, 'a lower-case scheme is still the key (RFC 9110)')
  t.equal((await askRag({ authorization: `Basic ${ragKey.key}` })).status, 200, 'a key under another scheme is no key: anonymous on the public RAG route')
  t.equal(rag.requests.at(-1)?.headers['x-user-id'], undefined, 'and names nobody')

  // Long keys: refused without a look-up, and never a 5xx.
  for (const length of [252, 253, 300, 4000, 12_000]) {
    const long = 'agk_' + 'a'.repeat(length)
    refused(t, await askRag(keyHeader(long)), `a key of ${long.length} characters`, 401, 'invalid_api_key')
  }
  const huge = await raw('POST', '/api/v1/query', [['X-API-Key', 'agk_' + 'a'.repeat(70_000)], ['Content-Type', 'application/json']], '{"question":"x"}')
  t.ok(huge.status >= 400 && huge.status < 500, `a 70 kB key header: ${huge.status}`)
  // Bytes that are no ASCII letter: Latin-1 and UTF-8.
  for (const odd of ['agk_\u00e9\u00e9\u00e9', 'agk_\u00ff', `${ragKey.key.slice(0, 8)}\u00c3\u00a9${ragKey.key.slice(8)}`]) {
    const answer = await raw('POST', '/api/v1/query', [['X-API-Key', odd], ['Content-Type', 'application/json']], '{"question":"x"}')
    refused(t, answer, `a key with byte(s) ${JSON.stringify(odd.slice(4, 10))}`, 401)
  }
  // Bodies and framing meant to trip a handler into a 5xx.
  const forgedNone = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from(JSON.stringify({ iss: 'better-auth', sub: owner.userId, sid: 'x', exp: 9_999_999_999 })).toString('base64url')}.`
  refused(t, await post('/auth/logout', {}, bearer(forgedNone)), 'logout with an alg:none token', 401, 'invalid_token')
  refused(t, await get('/auth/me', bearer(forgedNone)), '/auth/me with an alg:none token', 401, 'invalid_token')
  const framings: Array<[string, string, Array<[string, string]>, string]> = [
    ['POST', '/auth/login', [['Content-Type', 'application/json'], ['Content-Encoding', 'gzip']], '{"email":"a@b.c","password":"x"}'],
    ['POST', '/api/v1/query', [['X-API-Key', ragKey.key], ['Content-Type', 'application/json'], ['Content-Encoding', 'gzip']], 'not gzip'],
    ['POST', '/auth/token/refresh', [['Content-Type', 'application/json; charset=utf-16']], '{"refreshToken":"x"}'],
    ['POST', '/auth/logout', [['Content-Type', 'application/json']], 'null'],
    ['POST', '/auth/signup', [['Content-Type', 'application/json']], '"just a string"']
  ]
  for (const [method, target, headers, body] of framings) {
    const answer = await raw(method, target, headers, body)
    t.ok(answer.status < 500, `${method} ${target} ${JSON.stringify(headers.slice(-1))}: ${answer.status}, never a 5xx`)
  }
  // A key in the query string is no key: the call is anonymous (the RAG route is public) and names nobody.
  const inQuery = await post(`/api/v1/query?api_key=${ragKey.key}&x-api-key=${ragKey.key}`, { question: 'x' })
  t.equal(inQuery.status, 200)
  t.equal(rag.requests.at(-1)?.headers['x-user-id'], undefined, 'a key in the query is nobody')
})

t.test('the key of a banned, deleted, disabled or expired owner opens nothing, cached or not', async (t) => {
  const reader = await signUp(stack)
  const key = await createKey(reader, { name: 'doomed', scope: 'api' })
  const kept = await createKey(reader, { name: 'doomed too' })
  t.equal((await get('/api/private', keyHeader(key.key))).status, 200, 'cached now')
  t.equal((await askRag(bearer(kept.key))).status, 200)

  // Another reader's key id does not let you touch the key, nor delete it through an update.
  const thief = await signUp(stack)
  for (const [path, body] of [['/auth/api-key/update', { keyId: key.id, enabled: false }], ['/auth/api-key/update', { keyId: key.id, expiresIn: 86_400 }], ['/auth/api-key/delete', { keyId: key.id }], ['/auth/api-key/get', { id: key.id }]] as const) {
    const answer = await answerOf(await postJson(thief.browser, `${stack.url}${path}`, body))
    t.ok(answer.status >= 400 && answer.status < 500, `${path} of another reader's key: ${answer.status}`)
  }
  const peeked = await answerOf(await thief.browser(`${stack.url}/auth/api-key/get?id=${key.id}`))
  t.ok(peeked.status >= 400 && peeked.status < 500, `GET get of another reader's key: ${peeked.status}`)
  t.equal((await get('/api/private', keyHeader(key.key))).status, 200, 'still works')

  // Server-only fields, a scope of our own invention, a key that never expires: refused at creation and update.
  for (const body of [{ name: 'x', scope: 'admin' }, { name: 'x', scope: ['api'] }, { name: 'x', permissions: { gateway: ['api'] } }, { name: 'x', userId: thief.userId }, { name: 'x', remaining: null }, { name: 'x', expiresIn: 3600 }, { name: 'x', expiresIn: 400 * 86_400 }, { name: 'x', prefix: 'agk_evil' }, { name: 'x', metadata: { a: 1 } }, { name: 'x', rateLimitEnabled: false }]) {
    const answer = await answerOf(await postJson(reader.browser, `${stack.url}/auth/api-key/create`, body))
    refused(t, answer, `create with ${JSON.stringify(body)}`, 400)
  }
  for (const body of [{ keyId: kept.id, expiresIn: null }, { keyId: kept.id, permissions: { gateway: ['api'] } }, { keyId: kept.id, scope: 'api' }, { keyId: kept.id, remaining: 5 }, { keyId: kept.id, userId: thief.userId }]) {
    const answer = await answerOf(await postJson(reader.browser, `${stack.url}/auth/api-key/update`, body))
    refused(t, answer, `update with ${JSON.stringify(body)}`, 400)
  }
  for (const spelling of ['/auth/api-key/create/', '/auth//api-key/create', '/auth/api-key//create', '/auth/api-key/./create', '/auth/API-KEY/create', '/auth/api-key/%63reate']) {
    const answer = await raw('POST', spelling, [['Cookie', reader.cookie], ['Origin', TEST_ORIGIN], ['Content-Type', 'application/json']], JSON.stringify({ name: 'x', permissions: { gateway: ['api'] }, userId: thief.userId }))
    t.ok(answer.status >= 400 && answer.status < 500, `${spelling} with server-only fields: ${answer.status} ${answer.body.slice(0, 120)}`)
  }
  const expiresNull = await answerOf(await postJson(reader.browser, `${stack.url}/auth/api-key/create`, { name: 'forever?', expiresIn: null }))
  t.ok(expiresNull.status !== 200 || expiresNull.body.expiresAt !== null, `expiresIn null at creation: ${expiresNull.status}, expiresAt ${String(expiresNull.body.expiresAt)}`)
  t.equal((await askRag(keyHeader(kept.key))).status, 200, 'the kept key still a rag key')
  refused(t, await get('/api/private', keyHeader(kept.key)), 'and not widened', 403, 'api_key_out_of_scope')

  // Banned: refused at once, although cached; as a bearer too.
  const chief = await signUp(stack)
  await stack.pool.query('UPDATE "user" SET role = \'admin\' WHERE id = $1', [chief.userId])
  await (await postJson(chief.browser, `${stack.url}/auth/sign-in/email`, { email: chief.email, password: PASSWORD })).arrayBuffer()
  const ban = await postJson(chief.browser, `${stack.url}/auth/admin/ban-user`, { userId: reader.userId })
  t.equal(ban.status, 200)
  t.equal(ban.headers.get('x-auth-gateway-revoked-user'), null, 'the internal header stays inside')
  await ban.arrayBuffer()
  for (const headers of [keyHeader(key.key), bearer(key.key)]) {
    refused(t, await get('/api/private', headers), `banned owner, ${Object.keys(headers)[0]}`, 401, 'invalid_api_key')
    t.equal((await get('/health', headers)).status, 200, 'health does not read the caller')
  }
  refused(t, await askRag(keyHeader(kept.key)), 'banned owner, RAG', 401, 'invalid_api_key')
  refused(t, await get('/api/validate-session', keyHeader(kept.key)), 'banned owner, validate-session', 401, 'invalid_api_key')
  const unban = await postJson(chief.browser, `${stack.url}/auth/admin/unban-user`, { userId: reader.userId })
  await unban.arrayBuffer()
  t.equal((await get('/api/private', keyHeader(key.key))).status, 200, 'the ban lifted: the key opens again')

  // Deleted (through the gateway): refused at once, although cached.
  const doomed = await signUp(stack)
  const doomedKey = await createKey(doomed, { name: 'gone', scope: 'api' })
  t.equal((await get('/api/private', keyHeader(doomedKey.key))).status, 200)
  const deleted = await postJson(doomed.browser, `${stack.url}/auth/delete-user`, { password: PASSWORD })
  t.equal(deleted.status, 200, `delete-user: ${deleted.status}`)
  await deleted.arrayBuffer()
  refused(t, await get('/api/private', keyHeader(doomedKey.key)), 'deleted owner', 401, 'invalid_api_key')
  const { rows } = await stack.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM apikey WHERE "referenceId" = $1', [doomed.userId])
  t.equal(rows[0].n, 0, 'the keys went with the owner')
  // Deleted behind the gateway's back (another tool, the database): refused once the cache expires.
  const sly = await signUp(stack)
  const slyKey = await createKey(sly, { name: 'behind the back' })
  await stack.pool.query('DELETE FROM "user" WHERE id = $1', [sly.userId])
  refused(t, await askRag(keyHeader(slyKey.key)), 'owner deleted in the database, key never cached', 401, 'invalid_api_key')
})

t.test('refresh tokens: used twice, raced, and logout with another\'s', async (t) => {
  const victim = await signUp(stack)
  const attacker = await signUp(stack)

  // Used twice: the second use ends the login, the newest tokens too.
  const first = await login(victim.email)
  const next = (await post('/auth/token/refresh', { refreshToken: first.refreshToken })).body as unknown as Tokens
  refused(t, await post('/auth/token/refresh', { refreshToken: first.refreshToken }), 'a used refresh token', 401, 'invalid_refresh_token')
  t.equal(await meStatus(next.token), 401, 'the login ended with the reuse')
  refused(t, await post('/auth/token/refresh', { refreshToken: next.refreshToken }), 'the newest refresh token after a reuse', 401, 'invalid_refresh_token')

  // Raced: the thief and the victim refresh with one token at the same moment. One may win; the other
  // must be refused, and as a reuse end the login (docs/tokens.md: "Two refreshes racing with one
  // token: one wins, the other is refused (and ends the login)").
  //
  // Found by this pass: `LoginTokens.rotate` once locked only the family row, so a refresh waiting on
  // the lock kept the token's unused state from its snapshot, and one token forked into two live
  // logins without any reuse detected. It locks the token's row too and uses a token up only when it
  // is unused. The first round after start-up often serialises on the pool's few connections; later
  // rounds overlap, so the race is run several times.
  const rounds: string[] = []
  let forked: Answer[] = []
  for (let round = 0; round < 6 && forked.length <= 1; round++) {
    const raced = await login(victim.email)
    const answers = await Promise.all([0, 1].map(async () => post('/auth/token/refresh', { refreshToken: raced.refreshToken })))
    rounds.push(answers.map((answer) => answer.status).join(','))
    for (const answer of answers) if (answer.status !== 200) refused(t, answer, 'the losing refresh', 401, 'invalid_refresh_token')
    forked = answers.filter((answer) => answer.status === 200)
  }
  t.ok(forked.length <= 1, `two concurrent refreshes of one refresh token: at most one wins (statuses per round: ${rounds.join(' | ')})`)
  const live: number[] = []
  for (const winner of forked) {
    const tokens = winner.body as unknown as Tokens
    live.push(await meStatus(tokens.token))
    // Each fork refreshes on, on a chain of its own.
    live.push((await post('/auth/token/refresh', { refreshToken: tokens.refreshToken })).status)
  }
  t.ok(forked.length <= 1 || live.every((status) => status === 401), `no fork lives on (the forks' access tokens and next refreshes answer ${live.join(',')})`)
  // A race lost is a reuse: the whole login ends, the winner's new tokens too.
  if (forked.length === 1 && rounds.at(-1) !== '200,200') t.same(live, [401, 401], 'the winner\'s tokens die with the login the loser ended')

  // Logout with someone else's refresh token ends that token's login, and only that one.
  const victimOther = await login(victim.email)
  const victimLogin = await login(victim.email)
  const attackerLogin = await login(attacker.email)
  const out = await post('/auth/logout', { refreshToken: victimLogin.refreshToken }, bearer(attackerLogin.token))
  t.equal(out.status, 204, 'holding the refresh token is holding the login (by design)')
  t.equal(await meStatus(victimLogin.token), 401, 'that login ends')
  t.equal(await meStatus(victimOther.token), 200, 'the victim\'s other login stays')
  t.equal(await meStatus(attackerLogin.token), 401, 'and the attacker\'s own, whose token came along')
  // Without the refresh token, an attacker's own bearer ends nothing of the victim's.
  const victimThird = await login(victim.email)
  const attackerAgain = await login(attacker.email)
  t.equal((await post('/auth/logout', {}, bearer(attackerAgain.token))).status, 204)
  t.equal(await meStatus(victimThird.token), 200, 'the attacker\'s logout is the attacker\'s')
  // Made-up or malformed refresh tokens, a /auth/jwt token, an identity token, a key: refused, nothing ended.
  const jwt = await issueToken(stack, victim)
  refused(t, await post('/auth/logout', {}, bearer(jwt.token)), 'logout with a /auth/jwt token', 400, 'login_token_required')
  t.equal(await meStatus(victimThird.token), 200)
  await askRag(bearer(victimThird.token))
  const identityToken = /^Bearer (\S+)$/.exec(String(rag.requests.at(-1)?.headers.authorization))?.[1] ?? ''
  refused(t, await post('/auth/logout', {}, bearer(identityToken)), 'logout with the upstream\'s identity token', 401, 'invalid_token')
  t.equal(await meStatus(victimThird.token), 200, 'an identity token ends nothing')
  for (const body of [{ refreshToken: 'A'.repeat(43) }, { refreshToken: victimThird.refreshToken.slice(0, 42) }, { refreshToken: `${victimThird.refreshToken} ` }, { refreshToken: victimThird.refreshToken.toUpperCase() === victimThird.refreshToken ? 'B'.repeat(43) : victimThird.refreshToken.toUpperCase() }]) {
    refused(t, await post('/auth/logout', body), `logout with ${JSON.stringify(body).slice(0, 40)}`)
  }
  t.equal(await meStatus(victimThird.token), 200, 'nothing ended')
})

t.test('login, sign-up and refresh with crafted bodies and origins', async (t) => {
  const reader = await signUp(stack)
  // Extra fields are refused, never passed on (a callbackURL, a role, a second password).
  for (const body of [{ email: reader.email, password: PASSWORD, callbackURL: 'http://evil.example' }, { email: reader.email, password: PASSWORD, rememberMe: true }, { email: reader.email, password: PASSWORD, role: 'admin' }]) {
    const answer = await post('/auth/login', body)
    t.ok(answer.status === 400 || answer.status === 200, `login with ${Object.keys(body).at(-1) ?? ''}: ${answer.status}`)
    if (answer.status === 200) t.notOk(JSON.stringify(answer.body).includes('admin'), 'no role came of it')
    else refused(t, answer, `login with ${Object.keys(body).at(-1) ?? ''}`, 400)
  }
  // Wrong types and shapes.
  const bodies: unknown[] = [
    { email: reader.email },
    { email: { $ne: '' }, password: PASSWORD },
    { email: reader.email, password: { toString: 1 } },
    { email: reader.email, password: PASSWORD, code: '12345a' },
    { email: 'x'.repeat(300) + '@example.com', password: PASSWORD },
    { email: reader.email, password: 'p'.repeat(2000) },
    [reader.email, PASSWORD],
    null,
    'email',
    42,
    true
  ]
  for (const body of bodies) {
    const answer = await post('/auth/login', body)
    refused(t, answer, `login with ${JSON.stringify(body).slice(0, 60)}`)
    t.not(answer.status, 200)
  }
  for (const body of [{ email: 123, password: 456 }, { email: true, password: false }, { email: [reader.email, reader.email], password: PASSWORD }, { email: [reader.email], password: ['wrong', PASSWORD] }]) {
    const answer = await post('/auth/login', body)
    refused(t, answer, `login with ${JSON.stringify(body).slice(0, 60)}`)
  }
  // Fastify's schema coercion (coerceTypes: 'array') takes a one-item array or a number for a string:
  // the caller's own right credentials, said another way. No escalation, noted only.
  for (const body of [{ email: [reader.email], password: [PASSWORD] }, { email: reader.email, password: PASSWORD, code: 123456 }]) {
    const answer = await post('/auth/login', body)
    t.equal(answer.status, 200, `login with the right credentials coerced: ${JSON.stringify(body).slice(0, 40)}`)
    t.equal((answer.body.user as { id?: string } | undefined)?.id, reader.userId, 'as the reader, nobody else')
  }
  for (const text of ['{', '{"email":', '{"__proto__":{"admin":true},"email":"a@b.c","password":"x"}', '{"constructor":{"prototype":{"x":1}},"email":"a@b.c","password":"x"}', `{"email":"${reader.email}","password":"${PASSWORD}","email":"other@example.com"}`]) {
    const answer = await answerOf(await fetch(`${stack.url}/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: text }))
    refused(t, answer, `login with the text ${text.slice(0, 50)}`)
  }
  for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
    const answer = await answerOf(await fetch(`${stack.url}/auth/login`, { method: 'POST', headers: { 'content-type': type }, body: `email=${reader.email}&password=${PASSWORD}` }))
    refused(t, answer, `login as ${type}`)
  }
  const huge = await answerOf(await fetch(`${stack.url}/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: reader.email, password: 'x'.repeat(20_000) }) }))
  refused(t, huge, 'a login body over the limit', 413)
  // NUL and lone surrogates in fields that reach better-auth and Postgres.
  for (const body of [{ email: `a\u0000b@example.com`, password: PASSWORD }, { email: reader.email, password: `x\u0000y` }, { email: `\ud800@example.com`, password: PASSWORD }]) {
    const answer = await post('/auth/login', body)
    refused(t, answer, `login with ${JSON.stringify(body).slice(0, 40)}`)
  }
  for (const body of [{ refreshToken: 1 }, { refreshToken: null }, { refreshToken: ['x'.repeat(43)] }, { refreshToken: 'x'.repeat(43), extra: 1 }, {}, [], null, { refreshToken: '\u0000'.repeat(43) }]) {
    const answer = await post('/auth/token/refresh', body)
    refused(t, answer, `refresh with ${JSON.stringify(body).slice(0, 40)}`)
  }
  for (const body of [{ refreshToken: 1 }, 'x', [], { other: 1 }]) {
    const answer = await post('/auth/logout', body)
    refused(t, answer, `logout with ${JSON.stringify(body)}`)
  }

  // Token sign-up: never an admin, never a verified address by its own say, never a foreign redirect.
  const email = uniqueEmail('attacker')
  const signedUp = await post('/auth/signup', { email, password: PASSWORD, name: 'A', role: 'admin', banned: false, emailVerified: true, twoFactorEnabled: true })
  t.not(signedUp.status, 500, `token sign-up with server fields: ${signedUp.status}`)
  const { rows } = await stack.pool.query<{ role: string | null, emailVerified: boolean, twoFactorEnabled: boolean | null }>('SELECT role, "emailVerified", "twoFactorEnabled" FROM "user" WHERE email = $1', [email])
  if (rows.length === 1) {
    t.not(rows[0].role, 'admin', 'no admin by sign-up')
    t.equal(rows[0].emailVerified, false, 'no verified address by sign-up')
    t.not(rows[0].twoFactorEnabled, true)
  } else {
    refused(t, signedUp, 'token sign-up with server fields', 400)
  }
  for (const callbackURL of ['http://evil.example/x', '//evil.example', 'javascript:alert(1)', '/\\evil.example']) {
    refused(t, await post('/auth/signup', { email: uniqueEmail('cb'), password: PASSWORD, name: 'A', callbackURL }), `token sign-up to ${callbackURL}`, 400)
  }
  for (const body of [{ email: uniqueEmail('nul'), password: PASSWORD, name: 'a\u0000b' }, { email: uniqueEmail('obj'), password: PASSWORD, name: { a: 1 } }, { email: ['a@example.com', 'b@example.com'], password: PASSWORD, name: 'x' }, [], null]) {
    const answer = await post('/auth/signup', body)
    refused(t, answer, `token sign-up with ${JSON.stringify(body).slice(0, 60)}`)
  }

  // Origin: null, empty, foreign: the cookie sign-up, whose origin check refuses what is not allowed.
  for (const origin of ['null', 'http://evil.example', 'http://localhost:3000.evil.example']) {
    const answer = await raw('POST', '/auth/signup', [['Origin', origin], ['Content-Type', 'application/json']], JSON.stringify({ email: uniqueEmail('origin'), password: PASSWORD, name: 'O' }))
    refused(t, answer, `sign-up with Origin: ${origin}`, 403)
    t.equal(answer.headers['set-cookie'], undefined, 'no session cookie')
    t.notOk(answer.body.includes('refreshToken'), 'no tokens')
  }
  const empty = await raw('POST', '/auth/signup', [['Origin', ''], ['Content-Type', 'application/json']], JSON.stringify({ email: uniqueEmail('empty'), password: PASSWORD, name: 'O' }))
  // An empty Origin is an Origin (so the cookie sign-up), which better-auth lets through without a
  // cookie: harmless, as no browser sends one (nobody's cookie rides along); noted only.
  t.ok(empty.status < 500, `sign-up with an empty Origin: ${empty.status}, never a 5xx`)
  t.notOk(empty.body.includes('refreshToken'), 'the cookie sign-up, not the token one')
})

t.test('internal headers: revocation headers and upstream identity headers sent by a client', async (t) => {
  const reader = await signUp(stack)
  const key = await createKey(reader, { name: 'spoof', scope: 'api' })
  const victim = await signUp(stack)
  const victimKey = await createKey(victim, { name: 'victim', scope: 'api' })
  const spoofed = {
    'x-api-key-id': victimKey.id,
    'x-user-id': victim.userId,
    'x-auth-gateway-revoked-user': victim.userId,
    'x-auth-gateway-revoked-api-key': victimKey.id,
    'x-forwarded-user': victim.userId,
    'x-api-key-scope': 'api'
  }
  for (const headers of [{ ...spoofed, ...keyHeader(key.key) }, { ...spoofed, cookie: reader.cookie }, spoofed]) {
    const answer = await get('/api/private', headers)
    const received = app.requests.at(-1)?.headers ?? {}
    const via = Object.keys(headers).find((name) => name === 'x-api-key' || name === 'cookie') ?? 'nobody'
    if (via === 'nobody') {
      refused(t, answer, 'spoofed identity headers alone', 401)
      continue
    }
    t.equal(answer.status, 200, `app upstream with ${via}`)
    t.equal(received['x-user-id'], reader.userId, `${via}: X-User-Id is the gateway's`)
    t.equal(received['x-api-key-id'], via === 'x-api-key' ? key.id : undefined, `${via}: X-Api-Key-Id is the gateway's (or none)`)
    for (const name of ['x-auth-gateway-revoked-user', 'x-auth-gateway-revoked-api-key', 'x-forwarded-user', 'x-api-key-scope', 'x-api-key']) {
      t.equal(received[name], undefined, `${via}: ${name} is not passed on`)
    }
  }
  const anonymous = await askRag(spoofed)
  t.equal(anonymous.status, 200)
  t.equal(rag.requests.at(-1)?.headers['x-user-id'], undefined, 'an anonymous RAG call names nobody')
  t.equal(rag.requests.at(-1)?.headers['x-api-key-id'], undefined, 'and no key')
  // Sent to auth-core's routes: passed on to nobody, and no key of the victim's is dropped or kept by it.
  for (const path of ['/auth/get-session', '/auth/api-key/list']) {
    const answer = await answerOf(await reader.browser(`${stack.url}${path}`, { headers: spoofed }))
    t.equal(answer.status, 200, `${path} with the internal headers`)
    t.equal(answer.headers.get('x-auth-gateway-revoked-user'), null)
    t.equal(answer.headers.get('x-auth-gateway-revoked-api-key'), null)
    t.notOk(JSON.stringify(answer.body).includes(victimKey.id), `${path}: nothing of the victim's`)
  }
  // Deleting a key of someone else's: refused, and the victim's key keeps working.
  const notYours = await answerOf(await postJson(reader.browser, `${stack.url}/auth/api-key/delete`, { keyId: victimKey.id }))
  t.ok(notYours.status >= 400 && notYours.status < 500, `delete another's key: ${notYours.status}`)
  t.equal(notYours.headers.get('x-auth-gateway-revoked-api-key'), null)
  t.equal((await get('/api/private', keyHeader(victimKey.key))).status, 200, 'the victim\'s key still works')
  t.equal(app.requests.at(-1)?.headers['x-api-key-id'], victimKey.id)
})

t.test('no key, refresh token or password in any log line, refused attempts included', async (t) => {
  const lines: string[] = []
  const stream = new Writable({ write (chunk: Buffer, _encoding, done) { lines.push(...chunk.toString('utf8').split('\n').filter((line) => line !== '')); done() } })
  const config = testConfig(t, { DATABASE_URL: stack.databaseUrl, AUTH_CORE_URL: stack.authCoreUrl, RAG_UPSTREAM_URL: rag.url, APP_UPSTREAM_URL: app.url, LOG_LEVEL: 'debug' })
  const gateway = await buildGateway(config, { pool: stack.pool, logger: { level: 'debug', stream, redact: { paths: [...REDACT_PATHS], censor: '[redacted]' } } })
  t.teardown(() => gateway.close())
  const url = await listenOn(gateway)
  const reader = await signUp(stack)
  const key = await createKey(reader, { name: 'logged?' })
  const tokens = await login(reader.email)
  const calls: Array<Promise<Response>> = [
    postJson(fetch, `${url}/api/v1/query`, { q: 1 }, keyHeader(key.key)),
    fetch(`${url}/api/v1/profile`, { headers: keyHeader(key.key) }),
    fetch(`${url}/auth/jwt`, { headers: bearer(key.key) }),
    fetch(`${url}/api/private`, { headers: { 'x-api-key': `${key.key}x` } }),
    fetch(`${url}/api/private`, { headers: { 'x-api-key': `${key.key} ${key.key}` } }),
    fetch(`${url}/api/private/${key.key}`, { headers: { 'x-api-key': key.key } }),
    postJson(fetch, `${url}/auth/logout`, {}, bearer(key.key)),
    postJson(fetch, `${url}/auth/login`, { email: reader.email, password: key.key }),
    postJson(fetch, `${url}/auth/token/refresh`, { refreshToken: tokens.refreshToken }),
    postJson(fetch, `${url}/auth/token/refresh`, { refreshToken: tokens.refreshToken }),
    postJson(fetch, `${url}/auth/logout`, { refreshToken: tokens.refreshToken })
  ]
  for (const call of calls) await (await call).arrayBuffer()
  const twice = await rawRequest(url, 'GET', '/api/private', [['X-API-Key', key.key], ['X-API-Key', key.key]])
  t.equal(twice.status, 401)
  t.ok(lines.length > 5, 'the gateway logged')
  const all = lines.join('\n')
  // Except where the client itself put the key in the path.
  const logged = lines.filter((line) => !line.includes(`/api/private/${key.key}`)).join('\n')
  t.notOk(logged.includes(key.key.slice(4, 20)), 'no part of the key is logged')
  t.notOk(all.includes(tokens.refreshToken), 'nor the refresh token')
  t.notOk(all.includes(tokens.token.split('.')[2]), 'nor the access token')
  t.notOk(all.includes(PASSWORD), 'nor the password')
})
