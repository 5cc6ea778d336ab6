import t from 'tap'
import { spawn } from 'node:child_process'
import { getMigrations } from 'better-auth/db/migration'
import { createAuthOptions } from '../../auth-core/auth.ts'
import type { BetterAuthOptions } from 'better-auth'
import { createPool } from '../../shared/db.ts'
import type { Pool } from '../../shared/db.ts'
import { GATEWAY_MIGRATIONS, MIGRATION_LOCK_TABLE, MIGRATION_TABLE, migrate, sqlMigration } from '../../shared/migrate.ts'
import type { Migrations } from '../../shared/migrate.ts'
import { SERVER_DATABASE_URL, SECRET, tempDir, testConfig, testDatabase } from '../helper.ts'

const GATEWAY_NAMES = Object.keys(GATEWAY_MIGRATIONS).sort()
const TABLES = ['user', 'session', 'account', 'verification', 'profile', 'consent_log', 'token_revocation', 'signing_key', MIGRATION_TABLE, MIGRATION_LOCK_TABLE]

async function tables (pool: Pool): Promise<string[]> {
  const { rows } = await pool.query<{ name: string }>("SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1")
  return rows.map((row) => row.name)
}

async function recorded (pool: Pool): Promise<string[]> {
  const { rows } = await pool.query<{ name: string }>(`SELECT name FROM ${MIGRATION_TABLE} ORDER BY name`)
  return rows.map((row) => row.name)
}

/** Columns, constraints and indexes of every table but the old runner's bookkeeping. */
async function schema (pool: Pool): Promise<unknown[]> {
  const columns = await pool.query(`SELECT table_name, column_name, data_type, character_maximum_length, is_nullable, column_default
    FROM information_schema.columns WHERE table_schema = 'public' AND table_name <> 'schema_migrations'
    ORDER BY table_name, ordinal_position`)
  const constraints = await pool.query(`SELECT c.conrelid::regclass::text AS table_name, c.conname, pg_get_constraintdef(c.oid) AS definition
    FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
    WHERE n.nspname = 'public' AND c.conrelid::regclass::text <> 'schema_migrations' ORDER BY 1, 2`)
  const indexes = await pool.query(`SELECT tablename, indexname, indexdef FROM pg_indexes
    WHERE schemaname = 'public' AND tablename <> 'schema_migrations' ORDER BY 1, 2`)
  return [...columns.rows, ...constraints.rows, ...indexes.rows]
}

// The previous runner (shared/migrate.ts before Kysely's Migrator), verbatim.
const OLD_RUNNER_MIGRATIONS: ReadonlyArray<{ version: number, name: string, sql: string }> = [
  {
    version: 1,
    name: 'profiles and consent log',
    sql: `
      CREATE TABLE profile (
        user_id text PRIMARY KEY REFERENCES "user"(id) ON DELETE CASCADE,
        software_background varchar(100),
        hardware_background varchar(100),
        interest_area varchar(100),
        consent_given boolean NOT NULL DEFAULT false,
        consent_at timestamptz,
        consent_version text,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE TABLE consent_log (
        id bigserial PRIMARY KEY,
        user_id text NOT NULL,
        action text NOT NULL CHECK (action IN ('grant', 'withdraw')),
        policy_version text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX consent_log_user_id_idx ON consent_log (user_id, id);
    `
  },
  {
    version: 2,
    name: 'bearer token revocation',
    sql: `
      CREATE TABLE token_revocation (
        user_id text PRIMARY KEY REFERENCES "user"(id) ON DELETE CASCADE,
        tokens_valid_after timestamptz NOT NULL
      );
    `
  },
  {
    version: 3,
    name: 'signing keys of identity and client tokens',
    sql: `
      CREATE TABLE signing_key (
        kid text PRIMARY KEY,
        purpose text NOT NULL CHECK (purpose IN ('identity', 'client')),
        public_jwk jsonb NOT NULL,
        sealed_private_jwk text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        retires_at timestamptz
      );
      CREATE INDEX signing_key_purpose_idx ON signing_key (purpose, created_at DESC);
    `
  },
  {
    version: 4,
    name: 'token generations',
    sql: `
      ALTER TABLE token_revocation ADD COLUMN generation integer NOT NULL DEFAULT 0;
      UPDATE token_revocation SET generation = 1;
    `
  }
]

/** better-auth's tables, then the gateway's up to `upTo` exactly as the previous runner applied them. */
async function migrateWithOldRunner (pool: Pool, authOptions: BetterAuthOptions, upTo: number): Promise<void> {
  await (await getMigrations(authOptions)).runMigrations()
  await pool.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
  )`)
  const client = await pool.connect()
  try {
    for (const migration of OLD_RUNNER_MIGRATIONS.filter((m) => m.version <= upTo)) {
      await client.query('BEGIN')
      await client.query(migration.sql)
      await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [migration.version, migration.name])
      await client.query('COMMIT')
    }
  } finally {
    client.release()
  }
}

t.test('migrations create every table and are idempotent', async (t) => {
  const databaseUrl = await testDatabase(t)
  const config = testConfig(t, { DATABASE_URL: databaseUrl })
  const pool = createPool(databaseUrl)
  t.teardown(() => pool.end())
  const first = await migrate(pool, createAuthOptions(config, pool))
  t.same(first.gateway, GATEWAY_NAMES, 'every gateway migration applied')
  t.ok(first.betterAuth.created.includes('user'), 'better-auth tables created')
  const second = await migrate(pool, createAuthOptions(config, pool))
  t.same(second.gateway, [], 'nothing to apply the second time')
  t.same(second.betterAuth.created, [])
  const present = await tables(pool)
  for (const table of TABLES) t.ok(present.includes(table), `table ${table}`)
  t.notOk(present.includes('schema_migrations'), 'a fresh database has no trace of the previous runner')
  t.same(await recorded(pool), GATEWAY_NAMES)
  const { rows } = await pool.query<{ name: string }>(`SELECT column_name AS name FROM information_schema.columns
    WHERE table_schema = 'public' AND table_name = 'token_revocation' ORDER BY ordinal_position`)
  t.same(rows.map((r) => r.name), ['user_id', 'tokens_valid_after', 'generation'])
})

t.test('concurrent migrations (two pools at once) do not race', async (t) => {
  const databaseUrl = await testDatabase(t)
  const config = testConfig(t, { DATABASE_URL: databaseUrl })
  const pools = [createPool(databaseUrl), createPool(databaseUrl)]
  t.teardown(() => Promise.all(pools.map((p) => p.end())))
  const reports = await Promise.all(pools.map((pool) => migrate(pool, createAuthOptions(config, pool))))
  const applied = reports.flatMap((r) => r.gateway).sort()
  t.same(applied, GATEWAY_NAMES, 'each migration applied exactly once')
})

t.test('a failing migration fails the run by name, and leaves nothing of the run applied', async (t) => {
  const databaseUrl = await testDatabase(t)
  const config = testConfig(t, { DATABASE_URL: databaseUrl })
  const pool = createPool(databaseUrl)
  t.teardown(() => pool.end())
  const broken: Migrations = {
    ...GATEWAY_MIGRATIONS,
    '9998-half-done': sqlMigration('CREATE TABLE half_done (id integer PRIMARY KEY)'),
    '9999-broken': sqlMigration('CREATE TABLE never_done (id integer); SELECT * FROM no_such_table')
  }
  await t.rejects(migrate(pool, createAuthOptions(config, pool), broken), /migration 9999-broken failed: .*no_such_table/)
  let present = await tables(pool)
  for (const table of ['profile', 'half_done', 'never_done']) t.notOk(present.includes(table), `no table ${table}`)
  t.same(await recorded(pool), [], 'no migration recorded')

  t.same((await migrate(pool, createAuthOptions(config, pool))).gateway, GATEWAY_NAMES, 'the good ones apply afterwards')
  await t.rejects(migrate(pool, createAuthOptions(config, pool), broken), /migration 9999-broken failed/)
  present = await tables(pool)
  t.ok(present.includes('profile'), 'migrations of earlier runs stay')
  t.notOk(present.includes('half_done'))
  t.same(await recorded(pool), GATEWAY_NAMES)
})

t.test('a database migrated by the previous runner upgrades to the same schema', async (t) => {
  const fresh = await testDatabase(t)
  const config = testConfig(t, { DATABASE_URL: fresh })
  const freshPool = createPool(fresh)
  t.teardown(() => freshPool.end())
  await migrate(freshPool, createAuthOptions(config, freshPool))
  const expected = await schema(freshPool)
  const described = JSON.stringify(expected)
  t.ok(described.includes('signing_key_purpose_idx') && described.includes('"column_name":"generation"'), 'the comparison covers the gateway\'s tables')

  for (const upTo of [4, 2]) {
    await t.test(`old runner at version ${upTo}`, async (t) => {
      const databaseUrl = await testDatabase(t)
      const pool = createPool(databaseUrl)
      t.teardown(() => pool.end())
      const authOptions = createAuthOptions(testConfig(t, { DATABASE_URL: databaseUrl }), pool)
      await migrateWithOldRunner(pool, authOptions, upTo)
      await pool.query(`INSERT INTO "user" (id, name, email, "emailVerified", "createdAt", "updatedAt") VALUES ('u1', 'Reader', 'reader@example.com', false, now(), now())`)
      await pool.query(`INSERT INTO token_revocation (user_id, tokens_valid_after) VALUES ('u1', now())`)

      const report = await migrate(pool, authOptions)
      t.same(report.betterAuth, { created: [], altered: [] })
      t.same(report.gateway, GATEWAY_NAMES.slice(upTo), 'only what the old runner had not applied')
      t.same(await recorded(pool), GATEWAY_NAMES)
      t.same(await schema(pool), expected, 'the schema of a fresh database')
      const { rows } = await pool.query<{ user_id: string, generation: number }>('SELECT user_id, generation FROM token_revocation')
      // A revocation from before the generations migration is at generation 1, a later one at 0.
      t.same(rows, [{ user_id: 'u1', generation: upTo < 4 ? 1 : 0 }], 'data kept')
      t.same((await migrate(pool, authOptions)).gateway, [], 'idempotent after the upgrade')
    })
  }
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
  t.equal(results.filter((r) => /gateway applied 0001-/.test(r.output)).length, 1, 'one process applied the migrations, the other found them done')
  const again = await run()
  t.equal(again.code, 0)
  t.match(again.output, /better-auth up to date, gateway up to date/)
})
