import t from 'tap'
import { defaultKeyHasher } from '@better-auth/api-key'
import { buildAuthCore } from '../../auth-core/app.ts'
import { DEFAULT_API_KEY_EXPIRES_IN_SECONDS } from '../../auth-core/plugins/api-keys/index.ts'
import { VERIFY_API_KEY_PATH } from '../../auth-core/routes/verify-api-key.ts'
import { API_KEY_PREFIX, MAX_API_KEY_LENGTH } from '../../shared/api-keys.ts'
import { VERIFY_API_KEY_PATH as GATEWAY_VERIFY_API_KEY_PATH } from '../../gateway/route-paths.ts'
import { createPool } from '../../shared/db.ts'
import { REVOKED_API_KEY_HEADER, REVOKED_USER_HEADER } from '../../shared/token-revocation.ts'
import { cookieFetch, postJson, startTestStack, testConfig, uniqueEmail } from '../helper.ts'
import { freePort } from '../ports.ts'
import { PASSWORD, validate } from '../readers.ts'

/*
 * API keys at auth-core: better-auth's api-key plugin under `/api/auth/api-key/*` (the gateway's
 * `/auth/api-key/*`), a scope chosen at creation, nothing else a reader may set, and the internal
 * `POST /api/verify-api-key` that tells who a key belongs to. Keys are shown once, stored hashed,
 * and stop working when deleted, disabled, expired, or when their owner is banned or deleted; they
 * outlive "sign out everywhere" and a password change.
 */

const DAY = 24 * 60 * 60
// Two-factor sign-in for admins is the admin tests' subject; here an admin only bans.
const stack = await startTestStack(t, { ADMIN_REQUIRE_2FA: 'false' })
const core = stack.authCoreUrl

interface CoreReader { browser: ReturnType<typeof cookieFetch>, email: string, userId: string, cookie: () => string }
interface KeyBody { id: string, key: string, name: string, start: string | null, prefix: string | null, expiresAt: string, permissions: Record<string, string[]> | null, rateLimitEnabled: boolean, referenceId: string }
interface VerifyBody { user: Record<string, unknown> | null, key?: { id: string, name: string | null, scope: string, expiresAt: string | null } }

/** Signs a reader up through auth-core's own HTTP API (auto sign-in: the jar holds the session). */
async function signUpAtCore (): Promise<CoreReader> {
  const browser = cookieFetch()
  const email = uniqueEmail('keys')
  const response = await postJson(browser, `${core}/api/auth/sign-up/email`, { email, password: PASSWORD, name: 'Key Reader' })
  if (response.status !== 200) throw new Error(`sign-up answered ${response.status}: ${await response.text()}`)
  const { user } = await response.json() as { user: { id: string } }
  return { browser, email, userId: user.id, cookie: () => [...browser.cookies].map(([key, value]) => `${key}=${value}`).join('; ') }
}

const createKey = async (reader: CoreReader, body: Record<string, unknown>): Promise<Response> => postJson(reader.browser, `${core}/api/auth/api-key/create`, body)
async function newKey (reader: CoreReader, body: Record<string, unknown> = { name: 'notebook' }): Promise<KeyBody> {
  const response = await createKey(reader, body)
  if (response.status !== 200) throw new Error(`create answered ${response.status}: ${await response.text()}`)
  return response.json() as Promise<KeyBody>
}
async function verify (key: unknown, url = core): Promise<{ status: number, body: VerifyBody }> {
  const response = await postJson(fetch, `${url}${VERIFY_API_KEY_PATH}`, { key })
  return { status: response.status, body: await response.json() as VerifyBody }
}
const keyRows = async (userId: string): Promise<number> => (await stack.pool.query('SELECT 1 FROM apikey WHERE "referenceId" = $1', [userId])).rowCount ?? 0

const reader = await signUpAtCore()

t.test('one path, named once for each service', async (t) => {
  t.equal(VERIFY_API_KEY_PATH, '/api/verify-api-key')
  t.equal(GATEWAY_VERIFY_API_KEY_PATH, VERIFY_API_KEY_PATH)
})

t.test('a key is shown once, prefixed, stored hashed; the list never shows it', async (t) => {
  const before = Date.now()
  const created = await newKey(reader, { name: 'notebook', scope: 'api', expiresIn: 30 * DAY })
  t.ok(created.key.startsWith(API_KEY_PREFIX), `starts with ${API_KEY_PREFIX}`)
  t.ok(created.key.length >= API_KEY_PREFIX.length + 64, 'at least 64 random characters')
  t.same(created.permissions, { gateway: ['api'] }, 'the scope, kept as the plugin\'s permissions')
  t.equal(created.rateLimitEnabled, false, 'the plugin counts nothing: the gateway does')
  t.equal(created.referenceId, reader.userId)
  t.ok(Math.abs(new Date(created.expiresAt).getTime() - (before + 30 * DAY * 1000)) < 60_000, 'expires when asked')

  const listed = await reader.browser(`${core}/api/auth/api-key/list`)
  t.equal(listed.status, 200)
  const text = await listed.text()
  t.notOk(text.includes(created.key), 'the list does not contain the key')
  const { apiKeys } = JSON.parse(text) as { apiKeys: Array<Record<string, unknown>> }
  const entry = apiKeys.find((item) => item.id === created.id)
  t.ok(entry, 'the key is listed')
  t.notOk(entry !== undefined && 'key' in entry, 'without a key field')
  t.same(entry?.permissions, { gateway: ['api'] })

  const got = await reader.browser(`${core}/api/auth/api-key/get?id=${created.id}`)
  t.notOk((await got.text()).includes(created.key), 'get does not show it either')

  const { rows } = await stack.pool.query<{ row: string, key: string }>('SELECT row_to_json(apikey)::text AS row, key FROM apikey WHERE id = $1', [created.id])
  t.notOk(rows[0].row.includes(created.key), 'no column holds the key')
  t.notOk(rows[0].row.includes(created.key.slice(API_KEY_PREFIX.length + 2)), 'nor more than its first characters (`start`)')
  t.equal(rows[0].key, await defaultKeyHasher(created.key), 'the key column is the plugin\'s hash of it')
})

t.test('defaults: scope rag, 90 days; a name is required; expiry between 1 and 365 days', async (t) => {
  const before = Date.now()
  const created = await newKey(reader, { name: 'defaults' })
  t.same(created.permissions, { gateway: ['rag'] })
  t.ok(Math.abs(new Date(created.expiresAt).getTime() - (before + DEFAULT_API_KEY_EXPIRES_IN_SECONDS * 1000)) < 60_000, 'expires in 90 days')
  t.equal((await verify(created.key)).body.key?.scope, 'rag')

  for (const [what, body, code] of [
    ['no name', { scope: 'rag' }, 'NAME_REQUIRED'],
    ['under a day', { name: 'short', expiresIn: DAY - 1 }, 'EXPIRES_IN_IS_TOO_SMALL'],
    ['over 365 days', { name: 'long', expiresIn: 366 * DAY }, 'EXPIRES_IN_IS_TOO_LARGE']
  ] as const) {
    const refused = await createKey(reader, body)
    t.equal(refused.status, 400, what)
    t.match(await refused.json(), { error: code.toLowerCase(), code }, `${what}: the project's format, better-auth's code`)
  }
})

t.test('an unknown scope is refused with 400 in the project\'s format', async (t) => {
  const count = await keyRows(reader.userId)
  for (const scope of ['admin', 'auth', 'RAG', '', 1, ['rag'], null]) {
    const refused = await createKey(reader, { name: 'scoped', scope })
    t.equal(refused.status, 400, `scope ${JSON.stringify(scope)}`)
    const body = await refused.json() as { error: string, message: string }
    t.equal(body.error, 'invalid_api_key_scope')
    t.match(body.message, /"rag", "api"/, 'the message names the scopes')
  }
  t.equal(await keyRows(reader.userId), count, 'no key was made')
})

t.test('a reader sets name, expiresIn and scope only: every other field is refused, nothing is made', async (t) => {
  const count = await keyRows(reader.userId)
  const other = await signUpAtCore()
  for (const [field, value] of [
    ['permissions', { gateway: ['api', 'admin'] }],
    ['userId', other.userId],
    ['rateLimitEnabled', true],
    ['rateLimitMax', 1_000_000],
    ['rateLimitTimeWindow', 1],
    ['remaining', 5],
    ['refillAmount', 5],
    ['refillInterval', 1000],
    ['prefix', 'ghp_'],
    ['metadata', { tier: 'gold' }],
    ['organizationId', 'org'],
    ['configId', 'other']
  ] as const) {
    const refused = await createKey(reader, { name: 'sneaky', [field]: value })
    t.equal(refused.status, 400, `${field} refused`)
    t.match(await refused.json(), { error: 'api_key_field_not_allowed', message: new RegExp(`"${field}"`) })
  }
  t.equal(await keyRows(reader.userId), count, 'no key was made for the reader')
  t.equal(await keyRows(other.userId), 0, 'nor for the other user')

  const created = await newKey(reader)
  for (const [field, value] of [['permissions', { gateway: ['api'] }], ['rateLimitEnabled', true], ['remaining', 5], ['userId', other.userId], ['metadata', { a: 1 }]] as const) {
    const refused = await postJson(reader.browser, `${core}/api/auth/api-key/update`, { keyId: created.id, [field]: value })
    t.equal(refused.status, 400, `update: ${field} refused`)
    t.notOk(refused.headers.has(REVOKED_API_KEY_HEADER), 'nothing changed, nothing to forget')
  }
  const forever = await postJson(reader.browser, `${core}/api/auth/api-key/update`, { keyId: created.id, expiresIn: null })
  t.equal(forever.status, 400, 'a key cannot be made to never expire')
  t.match(await forever.json(), { error: 'api_key_expiry_required' })
  t.equal((await verify(created.key)).body.key?.scope, 'rag', 'the key is as it was')
})

t.test('verify: the owner as validate-session shows them, and the key', async (t) => {
  const created = await newKey(reader, { name: 'verify-me', scope: 'api' })
  const { status, body } = await verify(created.key)
  t.equal(status, 200)
  const session = await validate(core, { cookie: reader.cookie() })
  t.same(body.user, session.body.user, 'the same user fields as validate-session')
  t.match(body.user, { id: reader.userId, email: reader.email, name: 'Key Reader', role: 'user' })
  t.same(body.key, { id: created.id, name: 'verify-me', scope: 'api', expiresAt: created.expiresAt })

  const gateway = await stack.gateway.inject({ method: 'POST', url: VERIFY_API_KEY_PATH, headers: { 'content-type': 'application/json' }, payload: { key: created.key } })
  t.equal(gateway.statusCode, 404, 'the gateway does not serve it (internal: auth-core\'s port only)')
  t.notOk(gateway.body.includes(reader.userId), 'and says nothing of the owner')
})

t.test('verify: anything but a key object is a 400; a string that is no valid key is no user', async (t) => {
  for (const [what, payload] of [
    ['no key', {}],
    ['a number', { key: 12 }],
    ['null', { key: null }],
    ['an empty key', { key: '' }],
    ['too long', { key: `${API_KEY_PREFIX}${'a'.repeat(MAX_API_KEY_LENGTH)}` }],
    ['another field', { key: `${API_KEY_PREFIX}abc`, userId: reader.userId }],
    ['an array', [`${API_KEY_PREFIX}abc`]]
  ] as const) {
    const response = await postJson(fetch, `${core}${VERIFY_API_KEY_PATH}`, payload)
    t.equal(response.status, 400, what)
    t.match(await response.json(), { error: 'validation_failed' })
  }
  const notJson = await fetch(`${core}${VERIFY_API_KEY_PATH}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"key":' })
  t.equal(notJson.status, 400, 'not JSON')

  const created = await newKey(reader)
  for (const [what, key] of [
    ['unknown', `${API_KEY_PREFIX}${'x'.repeat(64)}`],
    ['without the prefix', created.key.slice(API_KEY_PREFIX.length)],
    ['one character off', `${created.key.slice(0, -1)}${created.key.endsWith('a') ? 'b' : 'a'}`],
    ['a JWT', 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln'],
    ['with a NUL', `${created.key}\u0000`],
    ['with spaces', ` ${created.key} `],
    ['the hash', await defaultKeyHasher(created.key)]
  ] as const) {
    const { status, body } = await verify(key)
    t.equal(status, 200, what)
    t.same(body, { user: null }, `${what}: no user`)
  }
})

t.test('another user can neither see nor change nor delete your key', async (t) => {
  const created = await newKey(reader, { name: 'mine' })
  const other = await signUpAtCore()
  const listed = await (await other.browser(`${core}/api/auth/api-key/list`)).json() as { apiKeys: Array<{ id: string }> }
  t.same(listed.apiKeys, [], 'not in their list')
  t.equal((await other.browser(`${core}/api/auth/api-key/get?id=${created.id}`)).status, 404, 'get: not found')
  const updated = await postJson(other.browser, `${core}/api/auth/api-key/update`, { keyId: created.id, enabled: false })
  t.equal(updated.status, 404, 'update: not found')
  t.notOk(updated.headers.has(REVOKED_API_KEY_HEADER))
  const deleted = await postJson(other.browser, `${core}/api/auth/api-key/delete`, { keyId: created.id })
  t.equal(deleted.status, 404, 'delete: not found')
  t.notOk(deleted.headers.has(REVOKED_API_KEY_HEADER), 'no revocation signalled')
  t.equal((await verify(created.key)).body.user?.id, reader.userId, 'the key still works')
  t.equal((await postJson(fetch, `${core}/api/auth/api-key/create`, { name: 'anonymous' })).status, 401, 'no key without a session')
})

t.test('disabling and deleting: the answer names the key for the gateway; verify answers no user', async (t) => {
  const created = await newKey(reader)
  const disabled = await postJson(reader.browser, `${core}/api/auth/api-key/update`, { keyId: created.id, enabled: false })
  t.equal(disabled.status, 200)
  t.equal(disabled.headers.get(REVOKED_API_KEY_HEADER), created.id, 'disabling names the key')
  t.same((await verify(created.key)).body, { user: null }, 'a disabled key is no user')
  const enabled = await postJson(reader.browser, `${core}/api/auth/api-key/update`, { keyId: created.id, enabled: true, name: 'renamed' })
  t.equal(enabled.headers.get(REVOKED_API_KEY_HEADER), created.id, 'any change names it (the gateway caches the name and expiry too)')
  t.equal((await verify(created.key)).body.key?.name, 'renamed', 'enabled again, renamed')

  const deleted = await postJson(reader.browser, `${core}/api/auth/api-key/delete`, { keyId: created.id })
  t.equal(deleted.status, 200)
  t.equal(deleted.headers.get(REVOKED_API_KEY_HEADER), created.id, 'deleting names the key')
  t.same((await verify(created.key)).body, { user: null })
  t.equal((await postJson(reader.browser, `${core}/api/auth/api-key/delete`, { keyId: created.id })).status, 404, 'gone')
})

t.test('expired: no user (the row\'s expiry moved into the past, no waiting)', async (t) => {
  const created = await newKey(reader, { name: 'short', expiresIn: DAY })
  t.equal((await verify(created.key)).body.user?.id, reader.userId, 'valid for its one day')
  await stack.pool.query('UPDATE apikey SET "expiresAt" = now() - interval \'1 second\' WHERE id = $1', [created.id])
  t.same((await verify(created.key)).body, { user: null })
})

t.test('a key outlives sign-out everywhere and a password change, like a personal access token', async (t) => {
  const owner = await signUpAtCore()
  const created = await newKey(owner)
  const revoked = await postJson(owner.browser, `${core}/api/auth/revoke-sessions`, {})
  t.equal(revoked.status, 200)
  t.equal(revoked.headers.get(REVOKED_USER_HEADER), owner.userId, 'sessions and tokens were revoked')
  t.equal((await verify(created.key)).body.user?.id, owner.userId, 'the key still works')
  const signedIn = await postJson(owner.browser, `${core}/api/auth/sign-in/email`, { email: owner.email, password: PASSWORD })
  t.equal(signedIn.status, 200)
  const changed = await postJson(owner.browser, `${core}/api/auth/change-password`, { currentPassword: PASSWORD, newPassword: `${PASSWORD} 2`, revokeOtherSessions: true })
  t.equal(changed.status, 200)
  t.equal((await verify(created.key)).body.user?.id, owner.userId, 'and after a password change')
})

t.test('a banned owner\'s keys open nothing until the ban expires', async (t) => {
  const owner = await signUpAtCore()
  const created = await newKey(owner)
  const chief = await signUpAtCore()
  await stack.pool.query('UPDATE "user" SET role = \'admin\' WHERE id = $1', [chief.userId])
  const banned = await postJson(chief.browser, `${core}/api/auth/admin/ban-user`, { userId: owner.userId, banReason: 'abuse' })
  t.equal(banned.status, 200, 'banned by an admin')
  t.equal(banned.headers.get(REVOKED_USER_HEADER), owner.userId, 'the gateway is told whose credentials to forget')
  t.same((await verify(created.key)).body, { user: null }, 'banned: no user')
  await stack.pool.query('UPDATE "user" SET "banExpires" = now() - interval \'1 second\' WHERE id = $1', [owner.userId])
  t.equal((await verify(created.key)).body.user?.id, owner.userId, 'a ban past its banExpires is over')
  await stack.pool.query('UPDATE "user" SET "banExpires" = now() + interval \'1 hour\' WHERE id = $1', [owner.userId])
  t.same((await verify(created.key)).body, { user: null }, 'a ban until later still holds')
})

t.test('a deleted owner\'s keys open nothing, and go with the account', async (t) => {
  const owner = await signUpAtCore()
  const created = await newKey(owner)
  const deleted = await postJson(owner.browser, `${core}/api/auth/delete-user`, { password: PASSWORD })
  t.equal(deleted.status, 200)
  t.same((await verify(created.key)).body, { user: null })
  t.equal(await keyRows(owner.userId), 0, 'the keys were erased with the account')

  // A user removed behind better-auth's back (no hooks ran): the row stays, the key still opens nothing.
  const gone = await signUpAtCore()
  const orphan = await newKey(gone)
  await stack.pool.query('DELETE FROM "user" WHERE id = $1', [gone.userId])
  t.equal(await keyRows(gone.userId), 1)
  t.same((await verify(orphan.key)).body, { user: null })
})

t.test('Postgres unreachable: 503 database_unavailable, never "no user"', async (t) => {
  const pool = createPool(`postgres://postgres@127.0.0.1:${await freePort()}/nowhere`, { connectionTimeoutMillis: 1_000 })
  t.teardown(async () => { await pool.end() })
  const authCore = await buildAuthCore(testConfig(t, { DATABASE_URL: stack.databaseUrl }), { pool })
  t.teardown(async () => { await authCore.close() })
  const response = await authCore.inject({ method: 'POST', url: VERIFY_API_KEY_PATH, payload: { key: `${API_KEY_PREFIX}${'a'.repeat(64)}` } })
  t.equal(response.statusCode, 503)
  t.match(response.json(), { error: 'database_unavailable' })
})
