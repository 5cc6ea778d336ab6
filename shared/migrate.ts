import { getMigrations } from 'better-auth/db/migration'
import { Kysely, Migrator, PostgresDialect, sql } from 'kysely'
import type { Migration } from 'kysely'
import type { BetterAuthOptions } from 'better-auth'
import type { Pool } from './db.ts'

export type { Migration } from 'kysely'

/** Migrations by name; Kysely's Migrator runs them in the names' order. */
export type Migrations = Readonly<Record<string, Migration>>

/** A migration that runs one SQL text (several statements allowed). */
export function sqlMigration (text: string): Migration {
  return { async up (db) { await sql.raw(text).execute(db) } }
}

/**
 * The gateway's own tables. Append only: a released migration is never edited or renamed, and a new
 * one's name sorts after every other. They run after better-auth's, so they may reference its
 * `"user"` table.
 */
export const GATEWAY_MIGRATIONS: Migrations = {
  '0001-profiles-and-consent-log': sqlMigration(`
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
  `),
  '0002-bearer-token-revocation': sqlMigration(`
    CREATE TABLE token_revocation (
      user_id text PRIMARY KEY REFERENCES "user"(id) ON DELETE CASCADE,
      tokens_valid_after timestamptz NOT NULL
    );
  `),
  '0003-signing-keys': sqlMigration(`
    CREATE TABLE signing_key (
      kid text PRIMARY KEY,
      purpose text NOT NULL CHECK (purpose IN ('identity', 'client')),
      public_jwk jsonb NOT NULL,
      sealed_private_jwk text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
      retires_at timestamptz
    );
    CREATE INDEX signing_key_purpose_idx ON signing_key (purpose, created_at DESC);
  `),
  // Tokens from before this migration carry no generation (0): a user revoked before it is at 1,
  // so those tokens stay refused.
  '0004-token-generations': sqlMigration(`
    ALTER TABLE token_revocation ADD COLUMN generation integer NOT NULL DEFAULT 0;
    UPDATE token_revocation SET generation = 1;
  `),
  // Deleting an account is recorded in the consent log (without any profile data).
  '0005-consent-log-erasure': sqlMigration(`
    ALTER TABLE consent_log DROP CONSTRAINT consent_log_action_check;
    ALTER TABLE consent_log ADD CONSTRAINT consent_log_action_check CHECK (action IN ('grant', 'withdraw', 'erased'));
  `),
  // Every admin action; rows outlive the users they name (no foreign keys).
  '0006-admin-audit': sqlMigration(`
    CREATE TABLE admin_audit (
      id bigserial PRIMARY KEY,
      at timestamptz NOT NULL DEFAULT now(),
      actor_id text NOT NULL,
      action text NOT NULL,
      target_user_id text,
      ip text,
      details jsonb NOT NULL DEFAULT '{}'
    );
  `),
  // Token clients (POST /auth/login): one family per login, its refresh tokens stored as digests.
  // A family dies with its user, by logout, by a used token presented again, or when the user's
  // token generation moves past the one it began in.
  '0007-login-token-families': sqlMigration(`
    CREATE TABLE token_family (
      id text PRIMARY KEY,
      user_id text NOT NULL REFERENCES "user"(id) ON DELETE CASCADE,
      generation integer NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      revoked_at timestamptz,
      revoked_reason text CHECK (revoked_reason IN ('logout', 'reuse', 'revoked'))
    );
    CREATE INDEX token_family_user_id_idx ON token_family (user_id);
    CREATE TABLE refresh_token (
      digest text PRIMARY KEY,
      family_id text NOT NULL REFERENCES token_family(id) ON DELETE CASCADE,
      created_at timestamptz NOT NULL DEFAULT now(),
      expires_at timestamptz NOT NULL,
      used_at timestamptz
    );
    CREATE INDEX refresh_token_family_id_idx ON refresh_token (family_id);
  `)
}

/** The versions the previous runner recorded in `schema_migrations`, and the migrations they became. */
const LEGACY_VERSIONS: ReadonlyMap<number, string> = new Map([
  [1, '0001-profiles-and-consent-log'],
  [2, '0002-bearer-token-revocation'],
  [3, '0003-signing-keys'],
  [4, '0004-token-generations']
])

interface MigrationTables {
  gateway_migration: { name: string, timestamp: string }
}

export const MIGRATION_TABLE = 'gateway_migration' satisfies keyof MigrationTables
export const MIGRATION_LOCK_TABLE = 'gateway_migration_lock'

// An arbitrary constant: every replica takes the same lock, so only one migrates at a time.
const MIGRATION_LOCK_KEY = 7_243_101

export interface MigrationReport {
  betterAuth: { created: string[], altered: string[] }
  /** Names of the gateway migrations this run applied. */
  gateway: string[]
}

/**
 * Creates or updates every table: better-auth's (through its programmatic migration API) and the
 * gateway's (through Kysely's Migrator). Idempotent; a Postgres advisory lock makes replicas starting
 * together take turns, and each re-reads the schema after it holds the lock.
 */
export async function migrate (pool: Pool, authOptions: BetterAuthOptions, migrations: Migrations = GATEWAY_MIGRATIONS): Promise<MigrationReport> {
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

async function migrateLocked (pool: Pool, authOptions: BetterAuthOptions, migrations: Migrations): Promise<MigrationReport> {
  const client = await pool.connect()
  try {
    // Kysely's Migrator locks only its own run; this lock also covers better-auth's migration.
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY])
    try {
      const plan = await getMigrations(authOptions)
      await plan.runMigrations()
      // Never destroyed: that would end the caller's pool, and the pool is all it holds.
      const db = new Kysely<MigrationTables>({ dialect: new PostgresDialect({ pool }) })
      await adoptLegacyRecord(db)
      return {
        betterAuth: {
          created: plan.toBeCreated.map((t) => t.table),
          altered: plan.toBeAdded.map((t) => t.table)
        },
        gateway: await runGatewayMigrations(db, migrations)
      }
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY])
    }
  } finally {
    client.release()
  }
}

/**
 * On Postgres the Migrator runs every pending migration in one transaction, so a failure leaves
 * none of this run's applied.
 */
async function runGatewayMigrations (db: Kysely<MigrationTables>, migrations: Migrations): Promise<string[]> {
  const migrator = new Migrator({
    db,
    provider: { getMigrations: async () => ({ ...migrations }) },
    migrationTableName: MIGRATION_TABLE,
    migrationLockTableName: MIGRATION_LOCK_TABLE
  })
  const { error, results = [] } = await migrator.migrateToLatest()
  if (error !== undefined) {
    const failed = results.find((result) => result.status === 'Error')
    const cause = error instanceof Error ? error.message : String(error)
    throw new Error(`${failed === undefined ? 'gateway migrations' : `migration ${failed.migrationName}`} failed: ${cause}`, { cause: error })
  }
  return results.filter((result) => result.status === 'Success').map((result) => result.migrationName)
}

/**
 * A database the previous runner migrated has `schema_migrations` and the tables, but no Migrator
 * table: record its versions there, so the Migrator does not create those tables again.
 */
async function adoptLegacyRecord (db: Kysely<MigrationTables>): Promise<void> {
  await db.transaction().execute(async (trx) => {
    const { rows: [found] } = await sql<{ legacy: string | null, current: string | null }>`
      SELECT to_regclass('schema_migrations')::text AS legacy, to_regclass(${MIGRATION_TABLE}::text)::text AS current
    `.execute(trx)
    if (found === undefined || found.legacy === null || found.current !== null) return
    const { rows } = await sql<{ version: number }>`SELECT version FROM schema_migrations ORDER BY version`.execute(trx)
    const names = rows.map(({ version }) => {
      const name = LEGACY_VERSIONS.get(version)
      if (name === undefined) throw new Error(`schema_migrations holds version ${version}, which no migration matches`)
      return name
    })
    // The same table the Migrator would create.
    await trx.schema.createTable(MIGRATION_TABLE)
      .addColumn('name', 'varchar(255)', (col) => col.notNull().primaryKey())
      .addColumn('timestamp', 'varchar(255)', (col) => col.notNull())
      .execute()
    // One timestamp for all: the Migrator orders equal timestamps by name, which is the versions' order.
    const timestamp = new Date().toISOString()
    if (names.length > 0) await trx.insertInto(MIGRATION_TABLE).values(names.map((name) => ({ name, timestamp }))).execute()
  })
}
