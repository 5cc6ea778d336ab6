import type { FastifyReply, FastifyRequest } from 'fastify'
import { withDeadline } from './deadline.ts'
import { NotReadyError } from './errors.ts'
import type { SchemaReport, SchemaState, SchemaWatch } from './schema-status.ts'

/*
 * What the `GET /ready` routes of both services share: one deadline per check, the schema as a
 * check, and the 503 body. The body says `ok`/`down` (and the schema's state) per check; why goes
 * to the log only.
 */

/** Each readiness check's deadline. */
export const READINESS_CHECK_MS = 2_000

export type CheckResult<T = unknown> = { ok: true, value: T } | { ok: false, err: unknown }

export async function probe<T> (name: string, run: () => Promise<T>, ms: number = READINESS_CHECK_MS): Promise<CheckResult<T>> {
  try {
    return { ok: true, value: await withDeadline(run(), ms, name) }
  } catch (err) {
    return { ok: false, err }
  }
}

/** `unknown`: the schema could not be inspected (Postgres down, or the inspection failed). */
export type SchemaCheckState = SchemaState | 'unknown'

export type SchemaCheck = { state: SchemaState, report: SchemaReport } | { state: 'unknown', err: unknown }

export async function probeSchema (watch: SchemaWatch, ms: number = READINESS_CHECK_MS): Promise<SchemaCheck> {
  try {
    const report = await withDeadline(watch.check(), ms, 'schema check')
    return { state: report.state, report }
  } catch (err) {
    return { state: 'unknown', err }
  }
}

const SEVERITY: Readonly<Record<SchemaCheckState, number>> = { ok: 0, unknown: 1, outdated: 2, missing: 3 }

/** The worse of two views of the schema (the gateway's own and the one auth-core reports). */
export function worseSchemaState (a: SchemaCheckState, b: SchemaCheckState): SchemaCheckState {
  return SEVERITY[b] > SEVERITY[a] ? b : a
}

export function isSchemaCheckState (value: unknown): value is SchemaCheckState {
  return typeof value === 'string' && Object.hasOwn(SEVERITY, value)
}

/** Logs a schema that is not complete: what is missing, and which migrations are pending. */
export function logSchemaCheck (request: FastifyRequest, check: SchemaCheck): void {
  if (check.state === 'ok') return
  if (check.state === 'unknown') request.log.warn({ dependency: 'schema', err: check.err }, 'readiness check failed')
  else request.log.warn({ dependency: 'schema', state: check.state, problems: check.report.problems, pending: check.report.pending }, 'readiness check failed')
}

/** 503 `not_ready` for `reason`, with the request's id, `status` and the checks. */
function sendNotReadyBody (reply: FastifyReply, reason: string, status: 'not_ready' | 'draining', checks: Readonly<Record<string, string>>): FastifyReply {
  const error = new NotReadyError(reason)
  return reply.code(error.statusCode ?? 503).send({ error: 'not_ready', message: error.message, requestId: reply.request.id, status, checks })
}

/** `/ready` while the process drains: not ready whatever its dependencies say. */
export function sendDraining (reply: FastifyReply): FastifyReply {
  return sendNotReadyBody(reply, 'the process is shutting down', 'draining', {})
}

/**
 * Answers 503 `not_ready`, naming what is down and the schema's state. An `unknown` schema is named
 * only when Postgres itself answers (otherwise "postgres is not answering" says it).
 */
export function sendNotReady (reply: FastifyReply, down: readonly string[], schema: SchemaCheckState, checks: Readonly<Record<string, string>>): FastifyReply {
  const reasons: string[] = []
  if (down.length > 0) reasons.push(`${down.join(' and ')} ${down.length > 1 ? 'are' : 'is'} not answering`)
  if (schema === 'missing') reasons.push('the database schema is missing (the migrations have not run)')
  if (schema === 'outdated') reasons.push('the database schema is outdated (migrations are pending)')
  if (schema === 'unknown' && !down.includes('postgres')) reasons.push('the database schema could not be checked')
  return sendNotReadyBody(reply, reasons.join('; '), 'not_ready', checks)
}
