import { getMigrations } from 'better-auth/db/migration'
import type { BetterAuthOptions } from 'better-auth'
import type { Pool } from './db.ts'

export interface Migration {
  version: number
  name: string
  sql: string
}

/**
 * The gateway's own tables, in order. Append only: a released migration is never edited.
 * They run after better-auth's, so they may reference its `"user"` table.
 */
export const GATEWAY_MIGRATIONS: readonly Migration[] = [
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
    // Tokens from before this version carry no generation (0): a user revoked before it is at 1,
    // so those tokens stay refused.
    sql: `
      ALTER TABLE token_revocation ADD COLUMN generation integer NOT NULL DEFAULT 0;
      UPDATE token_revocation SET generation = 1;
    `
  }
]

// An arbitrary constant: every replica takes the same lock, so only one migrates at a time.
const MIGRATION_LOCK_KEY = 7_243_101

export interface MigrationReport {
  betterAuth: { created: string[], altered: string[] }
  gateway: number[]
}

/**
 * Creates or updates every table: better-auth's (through its programmatic migration API) and the
 * gateway's versioned SQL. Idempotent; a Postgres advisory lock makes replicas starting together
 * take turns, and each re-reads the schema after it holds the lock.
 */
export async function migrate (pool: Pool, authOptions: BetterAuthOptions, migrations: readonly Migration[] = GATEWAY_MIGRATIONS): Promise<MigrationReport> {
  // The embedded Postgres is a single session, where advisory locks are re-entrant: calls within
  // this process also take turns here.
  const previous = inProcessTurn
  let done = (): void => {}
  inProcessTurn = new Promise<void>((resolve) => { done = resolve })
  try {
    await previous
    return await migrateLocked(pool, authOptions, migrations)
  } finally {
    done()
  }
}

let inProcessTurn: Promise<void> = Promise.resolve()

async function migrateLocked (pool: Pool, authOptions: BetterAuthOptions, migrations: readonly Migration[]): Promise<MigrationReport> {
  const client = await pool.connect()
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY])
    try {
      const plan = await getMigrations(authOptions)
      await plan.runMigrations()
      const report: MigrationReport = {
        betterAuth: {
          created: plan.toBeCreated.map((t) => t.table),
          altered: plan.toBeAdded.map((t) => t.table)
        },
        gateway: []
      }
      await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
        version integer PRIMARY KEY,
        name text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`)
      const { rows } = await client.query<{ version: number }>('SELECT version FROM schema_migrations')
      const applied = new Set(rows.map((row) => row.version))
      for (const migration of migrations) {
        if (applied.has(migration.version)) continue
        await client.query('BEGIN')
        try {
          await client.query(migration.sql)
          await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [migration.version, migration.name])
          await client.query('COMMIT')
        } catch (err) {
          await client.query('ROLLBACK')
          throw new Error(`migration ${migration.version} (${migration.name}) failed`, { cause: err })
        }
        report.gateway.push(migration.version)
      }
      return report
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY])
    }
  } finally {
    client.release()
  }
}
