import t from 'tap'
import { createAuthOptions } from '../../auth-core/auth.ts'
import { createPool } from '../../shared/db.ts'
import type { Pool } from '../../shared/db.ts'
import { GATEWAY_MIGRATIONS, migrate } from '../../shared/migrate.ts'
import { expectedSchema, inspectSchema, SchemaWatch } from '../../shared/schema-status.ts'
import type { SchemaReport } from '../../shared/schema-status.ts'
import { testConfig, testDatabase } from '../helper.ts'
import { until } from '../poll.ts'
import type { Teardown } from '../helper.ts'

const GATEWAY_NAMES = Object.keys(GATEWAY_MIGRATIONS).sort()
const LAST = GATEWAY_NAMES[GATEWAY_NAMES.length - 1]

async function emptyDatabase (t: Teardown): Promise<Pool> {
  const pool = createPool(await testDatabase(t))
  t.teardown(() => pool.end())
  return pool
}

/** A pool whose schema inspections are counted (the catalogue query `inspectSchema` runs first). */
function counting (pool: Pool): { pool: Pick<Pool, 'query'>, inspections: () => number } {
  let inspections = 0
  const query = (async (text: string, values?: unknown[]) => {
    if (text.includes('pg_catalog.pg_attribute')) inspections += 1
    return pool.query(text, values)
  }) as Pool['query']
  return { pool: { query }, inspections: () => inspections }
}

t.test('inspectSchema: missing, outdated, ok', async (t) => {
  const pool = await emptyDatabase(t)
  const config = testConfig(t, { AUTH_USER_FIELDS: 'tier:string' })
  const authOptions = createAuthOptions(config, pool)
  const expected = expectedSchema(authOptions)
  const names = expected.tables.map((table) => table.name)
  for (const name of ['user', 'session', 'account', 'verification']) t.ok(names.includes(name), `better-auth's table ${name} is expected`)
  t.ok(expected.tables.find((table) => table.name === 'user')?.columns.includes('tier'), 'AUTH_USER_FIELDS columns are expected')
  t.same(expected.migrations, GATEWAY_NAMES)

  const empty = await inspectSchema(pool, expected)
  t.equal(empty.state, 'missing', 'an empty database is missing its schema')
  t.same(empty.pending, GATEWAY_NAMES, 'every gateway migration is pending')
  t.ok(empty.problems.includes('table "user" is missing'))

  // All but the last gateway migration: better-auth's tables exist, one migration is pending.
  const { [LAST]: _last, ...earlier } = GATEWAY_MIGRATIONS
  await migrate(pool, authOptions, earlier)
  const partial = await inspectSchema(pool, expected)
  t.equal(partial.state, 'outdated')
  t.same(partial.pending, [LAST])
  t.same(partial.problems, [`migration ${LAST} is pending`])

  await migrate(pool, authOptions)
  t.same(await inspectSchema(pool, expected), { state: 'ok', problems: [], pending: [] }, 'migrated: ok')

  // A column better-auth writes is gone, and one it never writes is required.
  await pool.query('ALTER TABLE "user" DROP COLUMN tier')
  await pool.query('ALTER TABLE "session" ADD COLUMN device text NOT NULL DEFAULT \'x\'')
  await pool.query('ALTER TABLE "session" ALTER COLUMN device DROP DEFAULT')
  const stale = await inspectSchema(pool, expected)
  t.equal(stale.state, 'outdated')
  t.same(stale.problems, ['column "user"."tier" is missing', 'column "session"."device" is required but never written'])
  await pool.query('ALTER TABLE "session" ALTER COLUMN device SET DEFAULT \'x\'')
  await pool.query('ALTER TABLE "user" ADD COLUMN tier text')
  t.equal((await inspectSchema(pool, expected)).state, 'ok', 'a required column with a default is fine')

  // Without better-auth's options (the gateway): only the gateway migrations count.
  const gatewayOnly = expectedSchema()
  t.same(gatewayOnly.tables, [])
  t.equal((await inspectSchema(pool, gatewayOnly)).state, 'ok')
  t.equal((await inspectSchema(await emptyDatabase(t), gatewayOnly)).state, 'missing')
})

t.test('SchemaWatch: one inspection per TTL, shared by concurrent askers; a migration is seen after the TTL', async (t) => {
  const pool = await emptyDatabase(t)
  const authOptions = createAuthOptions(testConfig(t), pool)
  const spy = counting(pool)
  const completed: SchemaReport[] = []
  const watch = new SchemaWatch(spy.pool, expectedSchema(authOptions), { ttlMs: 200, onComplete: (report) => { completed.push(report) } })

  const reports = await Promise.all(Array.from({ length: 50 }, async () => watch.check()))
  t.equal(spy.inspections(), 1, '50 concurrent checks: one inspection')
  t.ok(reports.every((report) => report === reports[0] && report.state === 'missing'))
  await watch.check()
  t.equal(spy.inspections(), 1, 'within the TTL: from the cache')
  t.same(completed, [], 'not complete: no callback')

  await migrate(pool, authOptions)
  // The next inspection (once the cached one is older than the TTL) sees the migration.
  const ok = await until('the watch to see the migration', 10_000, async () => { const report = await watch.check(); return report.state === 'ok' ? report : undefined }, 20)
  t.same(completed, [ok], 'the callback ran once, with the complete report')
  await until('a new inspection', 10_000, async () => (await watch.check()) !== ok ? true : undefined, 20)
  t.equal(completed.length, 1, 'a complete schema inspected again does not call back again')
})

t.test('SchemaWatch: a failed inspection is not cached', async (t) => {
  let calls = 0
  const failing = { query: (async () => { calls += 1; throw new Error('Connection terminated') }) as unknown as Pool['query'] }
  const watch = new SchemaWatch(failing, expectedSchema())
  await t.rejects(watch.check(), /Connection terminated/)
  await t.rejects(watch.check(), /Connection terminated/)
  t.equal(calls, 2, 'each check asks again')
})
