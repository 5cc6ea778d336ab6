import t from 'tap'
import { postJson, TEST_ORIGIN } from '../helper.ts'
import { PASSWORD, signUp } from '../readers.ts'
import { stackWithUpstreams } from '../upstream.ts'
import { NO_CONSENT_VERSION } from '../../auth-core/account-erasure.ts'

/*
 * Deleting an account through the gateway erases the user, every session, the token generation and
 * the profile; the consent log keeps one `erased` entry (no profile data); tokens stop working.
 */

const { stack } = await stackWithUpstreams(t, { CONSENT_VERSION: '7' })

const rows = async (sql: string, userId: string): Promise<number> => (await stack.pool.query(sql, [userId])).rowCount ?? 0

t.test('delete-user with the password erases everything listed', async (t) => {
  const reader = await signUp(stack)
  t.equal((await postJson(fetch, `${stack.url}/api/v1/profile`, { softwareBackground: 'Go', consentGiven: true }, { cookie: reader.cookie, origin: TEST_ORIGIN })).status, 200)
  const token = (await (await fetch(`${stack.url}/auth/jwt`, { headers: { cookie: reader.cookie } })).json() as { token: string }).token
  await postJson(fetch, `${stack.url}/auth/revoke-other-sessions`, {}, { cookie: reader.cookie, origin: TEST_ORIGIN })
  t.ok(await rows('SELECT 1 FROM token_revocation WHERE user_id = $1', reader.userId), 'a token generation to erase')

  const wrong = await postJson(fetch, `${stack.url}/auth/delete-user`, { password: 'not the password' }, { cookie: reader.cookie, origin: TEST_ORIGIN })
  t.equal(wrong.status, 400, 'the wrong password erases nothing')
  t.equal(await rows('SELECT 1 FROM "user" WHERE id = $1', reader.userId), 1)

  const deleted = await postJson(fetch, `${stack.url}/auth/delete-user`, { password: PASSWORD }, { cookie: reader.cookie, origin: TEST_ORIGIN })
  t.equal(deleted.status, 200, 'deleted')
  for (const [what, sql] of [
    ['the user', 'SELECT 1 FROM "user" WHERE id = $1'],
    ['the sessions', 'SELECT 1 FROM session WHERE "userId" = $1'],
    ['the accounts (password hash)', 'SELECT 1 FROM account WHERE "userId" = $1'],
    ['the token generation', 'SELECT 1 FROM token_revocation WHERE user_id = $1'],
    ['the profile', 'SELECT 1 FROM profile WHERE user_id = $1']
  ] as const) t.equal(await rows(sql, reader.userId), 0, `${what} erased`)
  const { rows: log } = await stack.pool.query<{ action: string, policy_version: string }>('SELECT action, policy_version FROM consent_log WHERE user_id = $1 ORDER BY id', [reader.userId])
  t.same(log.map((entry) => [entry.action, entry.policy_version]), [['grant', '7'], ['erased', '7']], 'the consent log records the grant and the erasure, under the version consented to')
  t.equal((await stack.gateway.inject({ method: 'GET', url: '/api/v1/profile', headers: { authorization: `Bearer ${token}` } })).statusCode, 401, 'the user\'s token is refused')
  t.equal((await stack.gateway.inject({ method: 'GET', url: '/api/v1/profile', headers: { cookie: reader.cookie } })).statusCode, 401, 'the session is refused')
})

t.test('an account that never consented: the erasure is logged without a policy version', async (t) => {
  const reader = await signUp(stack)
  t.equal((await postJson(fetch, `${stack.url}/auth/delete-user`, { password: PASSWORD }, { cookie: reader.cookie, origin: TEST_ORIGIN })).status, 200)
  const { rows: log } = await stack.pool.query<{ action: string, policy_version: string }>('SELECT action, policy_version FROM consent_log WHERE user_id = $1', [reader.userId])
  t.same(log.map((entry) => [entry.action, entry.policy_version]), [['erased', NO_CONSENT_VERSION]])
})
