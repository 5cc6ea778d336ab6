import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'
import { DatabaseSchemaOutdatedError, isSchemaMismatch } from '../shared/errors.ts'
import type { SchemaReport, SchemaWatch } from '../shared/schema-status.ts'

/*
 * better-auth checks the schema once per process and keeps the verdict: a mismatch is rethrown on
 * every later request, without asking the database again, until better-auth itself migrates that
 * database (@better-auth/core `db/schema-check.mjs`, `createSchemaCheck`; invalidated only by
 * `invalidateSchemaChecks` in `getMigrations().runMigrations()`). A migration run by another process
 * (`npm run migrate`, another replica) is never seen, and sign-up answers 500 until a restart.
 *
 * So auth-core watches the schema itself (`SchemaWatch`) and, when the database holds it, calls that
 * same `invalidateSchemaChecks` on the pool (the identity better-auth keys its verdict by): the next
 * request makes better-auth look again.
 */

/** Forgets better-auth's cached schema verdict for `database` (the pool given to better-auth). */
export type ForgetSchemaVerdict = (database: object) => void

/**
 * better-auth's own `invalidateSchemaChecks`, from the copy of `@better-auth/core` that better-auth
 * itself loads (resolved from better-auth's folder: a second copy would hold another verdict cache).
 * Fails at startup, naming the export, if an upgrade of better-auth moved it.
 */
export async function loadForgetSchemaVerdict (): Promise<ForgetSchemaVerdict> {
  const betterAuth = createRequire(import.meta.url).resolve('better-auth')
  const internal = createRequire(betterAuth).resolve('@better-auth/core/db/internal')
  const module = await import(pathToFileURL(internal).href) as { invalidateSchemaChecks?: unknown }
  const invalidate = module.invalidateSchemaChecks
  if (typeof invalidate !== 'function') throw new Error(`better-auth's @better-auth/core/db/internal (${internal}) no longer exports invalidateSchemaChecks`)
  return (database) => { Reflect.apply(invalidate, undefined, [database]) }
}

/**
 * Runs better-auth calls so that a schema verdict better-auth cached is not kept past a migration:
 * on its `SchemaMismatchError`, the schema is looked at again (from the watch's short cache). Complete
 * now: better-auth's verdict is forgotten and the call made once more. Still incomplete: 503
 * `database_schema_outdated`.
 */
export class SchemaRecovery {
  readonly #watch: SchemaWatch
  readonly #forget: () => void
  // Forgotten at most once per report, so a better-auth that disagrees with the watch cannot cost
  // a schema look-up on every request.
  #forgottenFor: SchemaReport | undefined

  constructor (watch: SchemaWatch, forget: () => void) {
    this.#watch = watch
    this.#forget = forget
  }

  /** The watch found the schema complete: let better-auth look again. */
  complete (report: SchemaReport): void {
    this.#forgottenFor = report
    this.#forget()
  }

  async run<T> (call: () => Promise<T>): Promise<T> {
    try {
      return await call()
    } catch (err) {
      if (!isSchemaMismatch(err)) throw err
      // Postgres down here rejects, and the error handler answers database_unavailable.
      const report = await this.#watch.check()
      if (report.state !== 'ok' || report === this.#forgottenFor) throw new DatabaseSchemaOutdatedError({ cause: err })
      this.complete(report)
    }
    try {
      return await call()
    } catch (err) {
      if (isSchemaMismatch(err)) throw new DatabaseSchemaOutdatedError({ cause: err })
      throw err
    }
  }
}
