import t from 'tap'
import { once } from 'node:events'
import pg from 'pg'
import { createPool, logPoolErrors, poolOptions } from '../../shared/db.ts'
import { isDatabaseUnavailable } from '../../shared/errors.ts'
import { runScript } from '../cli.ts'
import { cookieFetch, JWT_TEST_SECRET, postJson, SECRET, SERVER_DATABASE_URL, startTestStack, tempDir, testConfig, testDatabase, TEST_ORIGIN, uniqueEmail } from '../helper.ts'

/*
 * Issue #13: no pool set a `statement_timeout`, so a query stuck behind a lock held a request (and
 * its connection) for as long as the lock lasted. Every pool now sets one (and an
 * `idle_in_transaction_session_timeout`), and a cancelled query answers 503 `database_unavailable`.
 */

const needsServer = SERVER_DATABASE_URL === undefined ? 'the embedded database (PGlite) ignores these settings' : false
const PASSWORD = 'correct horse battery'
const UNAVAILABLE = { error: 'database_unavailable', message: 'The database is unavailable, try again shortly' }

async function show (pool: pg.Pool, setting: string): Promise<string> {
  const { rows } = await pool.query<Record<string, string>>(`SHOW ${setting}`)
  return rows[0][setting]
}

/** A request that never hangs the test: status 0 if nothing came back within 8 s (the gateway's auth-core deadline is 10 s). */
async function timed (request: (signal: AbortSignal) => Promise<Response>): Promise<{ status: number, body: unknown, ms: number }> {
  const started = Date.now()
  try {
    const response = await request(AbortSignal.timeout(8_000))
    return { status: response.status, body: await response.json() as unknown, ms: Date.now() - started }
  } catch {
    return { status: 0, body: null, ms: Date.now() - started }
  }
}

t.test('every pool sets statement_timeout and idle_in_transaction_session_timeout; migrations opt out of the first', { skip: needsServer }, async (t) => {
  const url = await testDatabase(t)
  const defaults = createPool(url)
  const configured = createPool(url, poolOptions(testConfig(t, { DATABASE_STATEMENT_TIMEOUT: '250 ms', DATABASE_IDLE_IN_TRANSACTION_TIMEOUT: '2 seconds' })))
  const migrations = createPool(url, poolOptions(testConfig(t), { statementTimeoutMillis: 0 }))
  t.teardown(async () => { await Promise.all([defaults.end(), configured.end(), migrations.end()]) })
  t.equal(await show(defaults, 'statement_timeout'), '5s', 'default statement timeout: 5 s')
  t.equal(await show(defaults, 'idle_in_transaction_session_timeout'), '30s', 'default idle-in-transaction timeout: 30 s')
  t.equal(await show(configured, 'statement_timeout'), '250ms', 'DATABASE_STATEMENT_TIMEOUT')
  t.equal(await show(configured, 'idle_in_transaction_session_timeout'), '2s', 'DATABASE_IDLE_IN_TRANSACTION_TIMEOUT')
  t.equal(await show(migrations, 'statement_timeout'), '0', 'the migration pool: the server\'s own (none)')
})

t.test('a query past the statement timeout is cancelled, and counts as the database unavailable', { skip: needsServer }, async (t) => {
  const pool = createPool(await testDatabase(t), { statementTimeoutMillis: 200 })
  t.teardown(() => pool.end())
  const started = Date.now()
  const err = await pool.query('SELECT pg_sleep(10)').then(() => null, (error: unknown) => error)
  const ms = Date.now() - started
  t.ok(ms < 5_000, `cancelled after ${ms} ms, not 10 s`)
  t.equal((err as { code?: string } | null)?.code, '57014', 'query_canceled')
  t.ok(isDatabaseUnavailable(err), 'answered as database_unavailable')
  t.same((await pool.query('SELECT 1 AS one')).rows, [{ one: 1 }], 'the pool goes on serving')
})

t.test('a connection idle in a transaction past the timeout is closed by the server, and logged', { skip: needsServer }, async (t) => {
  const pool = createPool(await testDatabase(t), { idleInTransactionTimeoutMillis: 200 })
  t.teardown(() => pool.end())
  const warnings: Array<{ obj: { code?: string }, msg: string }> = []
  logPoolErrors(pool, { warn: (obj, msg) => { warnings.push({ obj, msg }) } })
  const client = await pool.connect()
  await client.query('BEGIN')
  await client.query('SELECT 1')
  // The server ends the session on its own; a deadline so that a missing timeout fails instead of hanging.
  const [err] = await once(client, 'error', { signal: AbortSignal.timeout(10_000) }).catch((error: unknown) => { client.release(true); throw error }) as [Error & { code?: string }]
  t.equal(err.code, '25P03', 'idle_in_transaction_session_timeout')
  t.ok(isDatabaseUnavailable(err), 'answered as database_unavailable')
  await t.rejects(client.query('SELECT 1'), 'the connection is gone')
  client.release(err)
  t.same(warnings.map(({ obj, msg }) => [obj.code, msg]), [['25P03', 'a Postgres connection was lost']])
  t.same((await pool.query('SELECT 1 AS one')).rows, [{ one: 1 }], 'the pool goes on serving')
})

t.test('a query stuck behind a lock answers 503 database_unavailable, from the gateway and from auth-core', { skip: needsServer }, async (t) => {
  const stack = await startTestStack(t, { DATABASE_STATEMENT_TIMEOUT: '300 ms' })
  const reader = cookieFetch()
  const email = uniqueEmail('stuck')
  t.equal((await postJson(reader, `${stack.url}/auth/sign-up/email`, { email, password: PASSWORD, name: 'Ada' })).status, 200)
  t.equal((await reader(`${stack.url}/api/v1/profile`)).status, 200)

  const locker = new pg.Client({ connectionString: stack.databaseUrl })
  await locker.connect()
  t.teardown(() => locker.end())

  await locker.query('BEGIN')
  await locker.query('LOCK TABLE profile IN ACCESS EXCLUSIVE MODE')
  const profile = await timed(async (signal) => reader(`${stack.url}/api/v1/profile`, { signal }))
  t.equal(profile.status, 503, `the profile read waits no longer than the timeout: 503 in ${profile.ms} ms`)
  t.match(profile.body, { ...UNAVAILABLE, requestId: String })
  await locker.query('ROLLBACK')
  t.equal((await reader(`${stack.url}/api/v1/profile`)).status, 200, 'served again once the lock is gone')

  const signIn = async (signal?: AbortSignal): Promise<Response> => fetch(`${stack.url}/auth/sign-in/email`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', origin: TEST_ORIGIN },
    body: JSON.stringify({ email, password: PASSWORD }),
    signal
  })
  await locker.query('BEGIN')
  await locker.query('LOCK TABLE "user" IN ACCESS EXCLUSIVE MODE')
  const stuck = await timed(signIn)
  t.equal(stuck.status, 503, `better-auth's query is cancelled: 503 in ${stuck.ms} ms (never a 500)`)
  t.match(stuck.body, { ...UNAVAILABLE, requestId: String })
  await locker.query('ROLLBACK')
  t.equal((await signIn()).status, 200, 'sign-in works once the lock is gone')
})

t.test('`npm run migrate` is not bound by DATABASE_STATEMENT_TIMEOUT', { skip: needsServer }, async (t) => {
  const run = await runScript('gateway/cli/migrate.ts', [], {
    DATABASE_URL: await testDatabase(t),
    DATA_DIR: tempDir(t),
    BETTER_AUTH_SECRET: SECRET,
    JWT_SECRET: JWT_TEST_SECRET,
    DATABASE_STATEMENT_TIMEOUT: '1 ms'
  })
  t.equal(run.code, 0, run.stderr)
  t.match(run.stdout, /gateway applied 0001-/)
})
