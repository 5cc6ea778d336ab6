import { getAuthTables } from 'better-auth/db'
import type { BetterAuthOptions } from 'better-auth'
import type { Pool } from './db.ts'
import { GATEWAY_MIGRATIONS, MIGRATION_TABLE } from './migrate.ts'
import type { Migrations } from './migrate.ts'

/*
 * Whether the database holds the schema this code needs, asked on readiness probes and after a query
 * failed for a missing table or column, never per request: one inspection (two catalogue queries)
 * answers for `DEFAULT_SCHEMA_CHECK_TTL_MS`, and concurrent askers share it. `npm run migrate` in
 * another process is seen by the next inspection, without a restart.
 */

/** `missing`: never migrated. `outdated`: migrated, but tables, columns or migrations are missing. */
export type SchemaState = 'ok' | 'missing' | 'outdated'

export interface SchemaReport {
  state: SchemaState
  /** One sentence per problem, for the log (never for a response body). */
  problems: readonly string[]
  /** Gateway migrations of `shared/migrate.ts` the database has not recorded. */
  pending: readonly string[]
}

export interface ExpectedTable {
  name: string
  /** Every column the code writes. */
  columns: readonly string[]
}

export interface ExpectedSchema {
  /** better-auth's tables: only a service that knows better-auth's options (auth-core) lists them. */
  tables: readonly ExpectedTable[]
  /** The gateway migrations that must be recorded. */
  migrations: readonly string[]
}

/** How long one inspection answers for. */
export const DEFAULT_SCHEMA_CHECK_TTL_MS = 1_000

/**
 * The schema the code needs: the gateway's migrations and, given better-auth's options, the tables and
 * columns better-auth writes (`getAuthTables`, the list better-auth's own schema check compares).
 */
export function expectedSchema (authOptions?: BetterAuthOptions, migrations: Migrations = GATEWAY_MIGRATIONS): ExpectedSchema {
  const tables = authOptions === undefined
    ? []
    : Object.values(getAuthTables(authOptions)).filter((table) => table.disableMigrations !== true).map((table) => ({
      name: table.modelName,
      columns: ['id', ...Object.entries(table.fields).map(([key, field]) => field.fieldName ?? key)]
    }))
  return { tables, migrations: Object.keys(migrations).sort() }
}

interface ColumnRow {
  table: string
  column: string
  /** NOT NULL without a default: an insert that omits it fails. */
  required: boolean
}

type Queryable = Pick<Pool, 'query'>

/** Compares the database (the first schema of the search path, where unqualified names resolve) with `expected`. */
export async function inspectSchema (pool: Queryable, expected: ExpectedSchema): Promise<SchemaReport> {
  const names = [...expected.tables.map((table) => table.name), MIGRATION_TABLE]
  const { rows } = await pool.query<ColumnRow>(`
    SELECT c.relname AS table, a.attname AS column,
      a.attnotnull AND NOT a.atthasdef AND a.attidentity = '' AND a.attgenerated = '' AS required
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    WHERE c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = current_schema())
      AND c.relkind IN ('r', 'p') AND c.relname = ANY($1::text[])`, [names])
  const columns = new Map<string, ColumnRow[]>()
  for (const row of rows) columns.set(row.table, [...columns.get(row.table) ?? [], row])

  const problems: string[] = []
  let presentTables = 0
  for (const table of expected.tables) {
    const actual = columns.get(table.name)
    if (actual === undefined) {
      problems.push(`table "${table.name}" is missing`)
      continue
    }
    presentTables += 1
    const written = new Set(table.columns)
    for (const column of table.columns) {
      if (!actual.some((row) => row.column === column)) problems.push(`column "${table.name}"."${column}" is missing`)
    }
    // better-auth refuses such a table too: every insert that omits the column fails.
    for (const row of actual) {
      if (row.required && !written.has(row.column)) problems.push(`column "${table.name}"."${row.column}" is required but never written`)
    }
  }

  let recorded = new Set<string>()
  if (columns.has(MIGRATION_TABLE)) {
    const result = await pool.query<{ name: string }>(`SELECT name FROM ${MIGRATION_TABLE}`)
    recorded = new Set(result.rows.map((row) => row.name))
  }
  const pending = expected.migrations.filter((name) => !recorded.has(name))
  for (const name of pending) problems.push(`migration ${name} is pending`)

  const neverMigrated = recorded.size === 0 && presentTables === 0
  const state: SchemaState = problems.length === 0 ? 'ok' : neverMigrated ? 'missing' : 'outdated'
  return { state, problems, pending }
}

export interface SchemaWatchOptions {
  /** How long one inspection answers for, in milliseconds. @default DEFAULT_SCHEMA_CHECK_TTL_MS */
  ttlMs?: number
  /** Called with the report that finds the schema complete, when the one before it did not (or there was none). */
  onComplete?: (report: SchemaReport) => void
}

/** One service's view of the schema: an inspection cached for a short while, shared by concurrent askers. */
export class SchemaWatch {
  readonly #pool: Queryable
  readonly #expected: ExpectedSchema
  readonly #ttlMs: number
  readonly #onComplete: ((report: SchemaReport) => void) | undefined
  #last: { report: SchemaReport, at: number } | undefined
  #pending: Promise<SchemaReport> | undefined

  constructor (pool: Queryable, expected: ExpectedSchema, options: SchemaWatchOptions = {}) {
    this.#pool = pool
    this.#expected = expected
    this.#ttlMs = options.ttlMs ?? DEFAULT_SCHEMA_CHECK_TTL_MS
    this.#onComplete = options.onComplete
  }

  /** The schema's state: the last inspection while it is fresh, else a new one. Rejects when Postgres cannot be asked. */
  async check (): Promise<SchemaReport> {
    const last = this.#last
    if (last !== undefined && Date.now() - last.at < this.#ttlMs) return last.report
    this.#pending ??= this.#inspect().finally(() => { this.#pending = undefined })
    return this.#pending
  }

  async #inspect (): Promise<SchemaReport> {
    const report = await inspectSchema(this.#pool, this.#expected)
    const before = this.#last?.report.state
    this.#last = { report, at: Date.now() }
    if (report.state === 'ok' && before !== 'ok') this.#onComplete?.(report)
    return report
  }
}
