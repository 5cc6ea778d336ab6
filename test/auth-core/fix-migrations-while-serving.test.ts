import t from 'tap'
import type { Test } from 'tap'
import { buildAuthCore } from '../../auth-core/app.ts'
import { createAuthOptions } from '../../auth-core/auth.ts'
import { buildGateway } from '../../gateway/app.ts'
import type { Config } from '../../shared/config.ts'
import { createPool, poolOptions } from '../../shared/db.ts'
import type { Pool } from '../../shared/db.ts'
import { GATEWAY_MIGRATIONS, migrate } from '../../shared/migrate.ts'
import { runScript } from '../cli.ts'
import { cookieFetch, JWT_TEST_SECRET, listenOn, postJson, SECRET, startTestStack, TEST_ORIGIN, testConfig, testDatabase, uniqueEmail } from '../helper.ts'
import type { Teardown } from '../helper.ts'
import { until } from '../poll.ts'

/*
 * Issue #13: better-auth keeps its schema verdict per process, so an auth-core started before
 * `npm run migrate` answered sign-up with a 500 until restarted, while `/ready` said 200. Now it
 * answers 503 `database_schema_outdated`, `/ready` (auth-core's and the gateway's) says why it is not
 * ready, and both recover from a migration run by another process without a restart.
 */

const PASSWORD = 'correct horse battery'
const OUTDATED = { error: 'database_schema_outdated', message: 'The database schema is missing or out of date, try again once the migrations have run' }
// `GET /auth/jwt` reads the column this migration adds.
const GENERATIONS = '0004-token-generations'

interface ReadyBody {
  status: string
  error?: string
  message?: string
  checks: Record<string, string>
}

/** `npm run migrate` in a process of its own, on the same database. */
async function migrateElsewhere (t: Test, config: Readonly<Config>): Promise<string> {
  const run = await runScript('gateway/cli/migrate.ts', [], {
    DATABASE_URL: config.databaseUrl as string,
    DATA_DIR: config.dataDir,
    BETTER_AUTH_SECRET: SECRET,
    JWT_SECRET: JWT_TEST_SECRET
  })
  t.equal(run.code, 0, `npm run migrate succeeded ${run.stderr}`)
  return run.stdout
}

/** auth-core alone on the database, listening on loopback (the pool is the caller's). */
async function authCoreOn (t: Teardown, config: Readonly<Config>): Promise<{ url: string, pool: Pool }> {
  const pool = createPool(config.databaseUrl as string, poolOptions(config))
  t.teardown(() => pool.end())
  const authCore = await buildAuthCore(config, { pool })
  t.teardown(() => authCore.close())
  return { url: await listenOn(authCore), pool }
}

async function ready (url: string): Promise<{ status: number, body: ReadyBody, requestId: string | null }> {
  const response = await fetch(`${url}/ready`)
  return { status: response.status, body: await response.json() as ReadyBody, requestId: response.headers.get('x-request-id') }
}

/** Polls `/ready` until it answers 200; every answer before that must be a 503. */
async function untilReady (t: Test, url: string): Promise<ReadyBody> {
  const seen: number[] = []
  const body = await until(`${url}/ready to answer 200`, 20_000, async () => {
    const answer = await ready(url)
    seen.push(answer.status)
    return answer.status === 200 ? answer.body : undefined
  })
  t.ok(seen.every((status) => status === 200 || status === 503), `503 until ready, then 200 (${seen.join(' ')})`)
  return body
}

async function signUp (url: string, f: typeof fetch = fetch): Promise<Response> {
  return postJson(f, url, { email: uniqueEmail('migrating'), password: PASSWORD, name: 'Ada' }, { origin: TEST_ORIGIN })
}

/** Counts the schema inspections run on `pool` (their catalogue query), from now on. */
function countInspections (pool: Pool): () => number {
  let inspections = 0
  const query = pool.query.bind(pool) as (...args: unknown[]) => unknown
  pool.query = ((...args: unknown[]) => {
    if (typeof args[0] === 'string' && args[0].includes('pg_catalog.pg_attribute')) inspections += 1
    return query(...args)
  }) as unknown as Pool['query']
  return () => inspections
}

t.test('auth-core started on an empty database: 503 until another process migrates it, then it serves, without a restart', async (t) => {
  const config = testConfig(t, { DATABASE_URL: await testDatabase(t) })
  const authCore = await authCoreOn(t, config)
  const signUpUrl = `${authCore.url}/api/auth/sign-up/email`

  const before = await signUp(signUpUrl)
  t.equal(before.status, 503, 'sign-up on an unmigrated database: 503 (it was a 500)')
  t.match(before.headers.get('content-type') ?? '', /^application\/json/)
  t.same(await before.json(), { ...OUTDATED, requestId: before.headers.get('x-request-id') })
  const lookUp = await fetch(`${authCore.url}/api/validate-session`, { headers: { cookie: 'better-auth.session_token=unknown' } })
  t.equal(lookUp.status, 503, 'a session look-up too')
  t.same(await lookUp.json(), { ...OUTDATED, requestId: lookUp.headers.get('x-request-id') })

  const notReady = await ready(authCore.url)
  t.equal(notReady.status, 503, '/ready says not ready (it said 200)')
  t.same(notReady.body, { error: 'not_ready', message: 'Not ready: the database schema is missing (the migrations have not run)', requestId: notReady.requestId, status: 'not_ready', checks: { postgres: 'ok', schema: 'missing' } })

  t.match(await migrateElsewhere(t, config), /better-auth \d+ table change\(s\), gateway applied 0001-/)

  t.same(await untilReady(t, authCore.url), { status: 'ready', checks: { postgres: 'ok', schema: 'ok' } }, 'ready once migrated')
  const reader = cookieFetch()
  const after = await signUp(signUpUrl, reader)
  t.equal(after.status, 200, 'sign-up succeeds in the same process')
  const { user } = await after.json() as { user: { id: string } }
  const session = await reader(`${authCore.url}/api/auth/get-session`)
  t.equal((await session.json() as { user: { id: string } }).user.id, user.id, 'and the session is read back')

  // Served traffic costs no schema look-up: only probes and schema failures ask.
  const inspections = countInspections(authCore.pool)
  for (let i = 0; i < 10; i++) {
    t.equal((await signUp(signUpUrl)).status, 200)
    t.equal((await reader(`${authCore.url}/api/auth/get-session`)).status, 200)
    t.equal((await reader(`${authCore.url}/api/validate-session`)).status, 200)
  }
  t.equal(inspections(), 0, '30 requests, no schema inspection')
})

t.test('without a readiness probe, the first requests after the migration are served', async (t) => {
  const config = testConfig(t, { DATABASE_URL: await testDatabase(t) })
  const authCore = await authCoreOn(t, config)
  const signUpUrl = `${authCore.url}/api/auth/sign-up/email`
  t.equal((await signUp(signUpUrl)).status, 503)
  await migrateElsewhere(t, config)
  // better-auth still holds its verdict: the failure itself makes auth-core look again (at most
  // one inspection per second), forget the verdict and retry the call.
  const seen: number[] = []
  await until('sign-up to succeed', 20_000, async () => {
    const response = await signUp(signUpUrl)
    seen.push(response.status)
    return response.status === 200 ? true : undefined
  })
  t.ok(seen.every((status) => status === 200 || status === 503), `503 until the schema is seen, never a 500 (${seen.join(' ')})`)
})

t.test('the gateway reports migrations pending as not ready, and is ready once another process ran it', async (t) => {
  const config = testConfig(t, { DATABASE_URL: await testDatabase(t) })
  const pool = createPool(config.databaseUrl as string, poolOptions(config))
  t.teardown(() => pool.end())
  // shared/migrate.ts' runner, stopped before the token generations (an upgrade not migrated yet).
  const earlier = Object.fromEntries(Object.entries(GATEWAY_MIGRATIONS).filter(([name]) => name < GENERATIONS))
  await migrate(pool, createAuthOptions(config, pool), earlier)
  const authCore = await buildAuthCore(config, { pool })
  t.teardown(() => authCore.close())
  const authCoreUrl = await listenOn(authCore)
  const gateway = await buildGateway(Object.freeze({ ...config, authCoreUrl }), { pool })
  t.teardown(() => gateway.close())
  const url = await listenOn(gateway)

  const notReady = await ready(url)
  t.equal(notReady.status, 503, 'the gateway is not ready (it said 200)')
  t.same(notReady.body, { error: 'not_ready', message: 'Not ready: the database schema is outdated (migrations are pending)', requestId: notReady.requestId, status: 'not_ready', checks: { postgres: 'ok', schema: 'outdated', authCore: 'ok' } })
  t.same((await ready(authCoreUrl)).body.checks, { postgres: 'ok', schema: 'outdated' }, 'nor is auth-core')

  const reader = cookieFetch()
  t.equal((await signUp(`${url}/auth/sign-up/email`, reader)).status, 200, 'better-auth\'s own tables are there: sign-up works')
  const token = await reader(`${url}/auth/jwt`)
  t.equal(token.status, 503, 'a route needing the pending migration: 503 (it was a 500)')
  t.same(await token.json(), { ...OUTDATED, requestId: token.headers.get('x-request-id') })

  t.match(await migrateElsewhere(t, config), new RegExp(`gateway applied ${GENERATIONS}`))
  t.same(await untilReady(t, url), { status: 'ready', checks: { postgres: 'ok', schema: 'ok', authCore: 'ok' } })
  t.equal((await reader(`${url}/auth/jwt`)).status, 200, 'the route works, without a restart')
})

t.test('a better-auth table gone while serving: 503 and not ready, until it is back', async (t) => {
  const stack = await startTestStack(t)
  const email = uniqueEmail('gone')
  t.equal((await postJson(fetch, `${stack.url}/auth/sign-up/email`, { email, password: PASSWORD, name: 'Ada' }, { origin: TEST_ORIGIN })).status, 200)
  t.equal((await ready(stack.url)).status, 200)

  await stack.pool.query('ALTER TABLE "session" RENAME TO session_gone')
  t.teardown(() => stack.pool.query('ALTER TABLE session_gone RENAME TO "session"').then(() => undefined, () => undefined))
  const signIn = async (): Promise<Response> => postJson(fetch, `${stack.url}/auth/sign-in/email`, { email, password: PASSWORD }, { origin: TEST_ORIGIN })
  // better-auth's verdict was clean, so the query itself fails; the short cache may still vouch for
  // the schema for up to a second after the last probe.
  const seen: number[] = []
  const failed = await until('sign-in to answer database_schema_outdated', 10_000, async () => {
    const response = await signIn()
    seen.push(response.status)
    return response.status === 503 ? await response.json() as unknown : undefined
  })
  t.match(failed, { ...OUTDATED, requestId: String }, 'sign-in: 503 database_schema_outdated (it was a 500)')
  t.ok(seen.slice(0, -1).every((status) => status === 500), `before the schema is looked at again, at most an internal error (${seen.join(' ')})`)
  const notReady = await until('/ready to say the schema is outdated', 10_000, async () => {
    const answer = await ready(stack.url)
    return answer.status === 503 ? answer.body : undefined
  })
  t.same(notReady.checks, { postgres: 'ok', schema: 'outdated', authCore: 'ok' })

  await stack.pool.query('ALTER TABLE session_gone RENAME TO "session"')
  await untilReady(t, stack.url)
  t.equal((await signIn()).status, 200, 'sign-in works again, without a restart')
})
