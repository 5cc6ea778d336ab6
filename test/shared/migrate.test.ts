import t from 'tap'
import { spawn } from 'node:child_process'
import { createAuthOptions } from '../../auth-core/auth.ts'
import { createPool } from '../../shared/db.ts'
import { GATEWAY_MIGRATIONS, migrate } from '../../shared/migrate.ts'
import { SERVER_DATABASE_URL, SECRET, tempDir, testConfig, testDatabase } from '../helper.ts'

const TABLES = ['user', 'session', 'account', 'verification', 'profile', 'consent_log', 'token_revocation', 'schema_migrations']

async function tables (databaseUrl: string): Promise<string[]> {
  const pool = createPool(databaseUrl, { max: 1 })
  try {
    const { rows } = await pool.query<{ name: string }>("SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1")
    return rows.map((row) => row.name)
  } finally {
    await pool.end()
  }
}

t.test('migrations create every table and are idempotent', async (t) => {
  const databaseUrl = await testDatabase(t)
  const config = testConfig(t, { DATABASE_URL: databaseUrl })
  const pool = createPool(databaseUrl)
  t.teardown(() => pool.end())
  const first = await migrate(pool, createAuthOptions(config, pool))
  t.same(first.gateway, GATEWAY_MIGRATIONS.map((m) => m.version), 'every gateway migration applied')
  t.ok(first.betterAuth.created.includes('user'), 'better-auth tables created')
  const second = await migrate(pool, createAuthOptions(config, pool))
  t.same(second.gateway, [], 'nothing to apply the second time')
  t.same(second.betterAuth.created, [])
  for (const table of TABLES) t.ok((await tables(databaseUrl)).includes(table), `table ${table}`)
  const { rows } = await pool.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version')
  t.same(rows.map((r) => r.version), GATEWAY_MIGRATIONS.map((m) => m.version))
})

t.test('concurrent migrations (two pools at once) do not race', async (t) => {
  const databaseUrl = await testDatabase(t)
  const config = testConfig(t, { DATABASE_URL: databaseUrl })
  const pools = [createPool(databaseUrl), createPool(databaseUrl)]
  t.teardown(() => Promise.all(pools.map((p) => p.end())))
  const reports = await Promise.all(pools.map((pool) => migrate(pool, createAuthOptions(config, pool))))
  const applied = reports.flatMap((r) => r.gateway).sort()
  t.same(applied, GATEWAY_MIGRATIONS.map((m) => m.version), 'each migration applied exactly once')
})

t.test('`npm run migrate` from two processes at once, against the machine\'s Postgres', { skip: SERVER_DATABASE_URL === undefined ? 'needs a Postgres server (DATABASE_URL or TEST_DATABASE_URL): the embedded one is owned by a single process' : false }, async (t) => {
  const databaseUrl = await testDatabase(t)
  const run = () => new Promise<{ code: number | null, output: string }>((resolve) => {
    const child = spawn(process.execPath, ['--import=tsx', 'gateway/cli/migrate.ts'], {
      env: { PATH: process.env.PATH, DATABASE_URL: databaseUrl, DATA_DIR: tempDir(t), BETTER_AUTH_SECRET: SECRET, JWT_SECRET: SECRET }
    })
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
    child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
    child.on('close', (code) => { resolve({ code, output }) })
  })
  const results = await Promise.all([run(), run()])
  for (const result of results) t.equal(result.code, 0, result.output)
  t.equal(results.filter((r) => /gateway applied/.test(r.output)).length, 1, 'one process applied the migrations, the other found them done')
  const again = await run()
  t.equal(again.code, 0)
  t.match(again.output, /better-auth up to date, gateway up to date/)
})
