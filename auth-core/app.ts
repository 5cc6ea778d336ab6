import { AsyncLocalStorage } from 'node:async_hooks'
import { join } from 'node:path'
import Fastify from 'fastify'
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest, FastifyServerOptions } from 'fastify'
import { ConfigError } from '../shared/config.ts'
import type { AuthCoreConfig } from '../shared/config.ts'
import { logPoolErrors } from '../shared/db.ts'
import drainPlugin, { SERVE_WHILE_DRAINING } from '../shared/drain.ts'
import requestIdPlugin, { requestIdGenerator } from '../shared/request-id.ts'
import { withDeadline } from '../shared/deadline.ts'
import type { Pool } from '../shared/db.ts'
import { clientErrorHandler, DatabaseSchemaOutdatedError, DatabaseUnavailableError, frameworkErrorHandler, isDatabaseUnavailable, isSchemaError, useErrorFormat } from '../shared/errors.ts'
import { expectedSchema, SchemaWatch } from '../shared/schema-status.ts'
import { createAuth } from './auth.ts'
import { connectSessionStorage } from './session-storage.ts'
import { Mailer } from './mail.ts'
import type { Auth } from './auth.ts'
import validateSessionRoutes from './routes/validate-session.ts'
import verifyApiKeyRoutes from './routes/verify-api-key.ts'
import requestMetrics, { methodLabel } from '../shared/metrics.ts'
import type { ProcessMetrics } from '../shared/metrics.ts'
import type { ProcessTracing } from '../shared/tracing.ts'
import { AuthCoreMetrics, endpointMatcher } from './metrics.ts'
import healthRoutes from './routes/health.ts'
import openApiRoutes from './routes/openapi.ts'
import { IMPERSONATION_PATHS } from './plugins/admin-policy/index.ts'
import { loadForgetSchemaVerdict, SchemaRecovery } from './schema-recovery.ts'
import { AUTH_CORE_ERRORS, containsNul, isJsonBody, NulCharacterError } from './errors.ts'
import { KeyRing } from '../shared/signing-keys.ts'

export interface AuthCoreOptions {
  pool: Pool
  logger?: FastifyServerOptions['logger']
  /** The process's metrics (`METRICS_PORT`); unset: none are kept. */
  metrics?: ProcessMetrics
  /** The process's tracing (`OTEL_EXPORTER_OTLP_ENDPOINT`); unset: no spans. */
  tracing?: ProcessTracing
}

declare module 'fastify' {
  interface FastifyInstance {
    auth: Auth
    /** Verification and password-reset mail (queued; `idle()` waits for it). */
    mailer: Mailer
  }
}

export const AUTH_CORE_PREFIX = '/api/auth'
const PUBLIC_AUTH_PATH = '/auth'
const BODYLESS = new Set(['GET', 'HEAD'])

function toWebHeaders (request: FastifyRequest): Headers {
  const headers = new Headers()
  for (const [name, value] of Object.entries(request.headers)) {
    if (value === undefined) continue
    if (Array.isArray(value)) for (const item of value) headers.append(name, item)
    else headers.set(name, value)
  }
  return headers
}

/**
 * better-auth answers errors as `{ code, message }`; the project's format is `{ error, message }`.
 * Both keys are kept so the official better-auth client still sees its `code`.
 */
function toErrorFormat (text: string, requestId: string): string {
  try {
    const body = JSON.parse(text) as unknown
    if (body !== null && typeof body === 'object' && !Array.isArray(body) && !('error' in body)) {
      const { code, message } = body as { code?: unknown, message?: unknown }
      return JSON.stringify({
        error: typeof code === 'string' ? code.toLowerCase() : 'auth_error',
        message: typeof message === 'string' && message !== '' ? message : 'The request was refused',
        ...body,
        requestId
      })
    }
  } catch {}
  return text
}

/** How long a failed request waits to learn whether Postgres answers, after better-auth already gave up. */
const DATABASE_PROBE_MS = 1_000

/**
 * Why Postgres does not answer `SELECT 1` (within `DATABASE_PROBE_MS`), or `null` when it does.
 * Concurrent failures share one probe.
 */
function databaseProbe (pool: Pool): () => Promise<unknown> {
  let pending: Promise<unknown> | null = null
  const probe = async (): Promise<unknown> => {
    try {
      await withDeadline(pool.query('SELECT 1'), DATABASE_PROBE_MS, 'SELECT 1')
      return null
    } catch (err) {
      return err
    }
  }
  return async () => (pending ??= probe().finally(() => { pending = null }))
}

/** The request better-auth is handling: the database failure it logged for it, if any. */
interface Handling {
  databaseError: unknown
  /** A query that failed for a missing table or column (the schema changed under a clean verdict). */
  schemaError: unknown
}

const handling = new AsyncLocalStorage<Handling>()

// Postgres' messages for SQLSTATE 42P01 and 42703.
const MISSING_RELATION = /^(relation|column) \S.* does not exist$/

/**
 * better-auth's log, watched: it answers a failed query with a bare 500 and hands the pg error only
 * to its logger, in the request's async context. A Postgres just restarted answers the probe again
 * by the time that 500 arrives, so the logged cause is what tells an outage from a bug.
 */
function watchingDatabaseErrors (log: FastifyBaseLogger): FastifyBaseLogger {
  const watched = Object.create(log) as FastifyBaseLogger
  watched.error = function error (obj: unknown, ...rest: unknown[]): void {
    const current = handling.getStore()
    const err = (obj as { err?: unknown } | null)?.err
    if (current !== undefined && current.databaseError === undefined && isDatabaseUnavailable(err)) current.databaseError = err
    else if (current !== undefined && current.schemaError === undefined) {
      if (isSchemaError(err)) current.schemaError = err
      // better-auth logs a missing relation or column by its message alone, without the error.
      else if (typeof rest[0] === 'string' && MISSING_RELATION.test(rest[0])) current.schemaError = new Error(rest[0])
    }
    Reflect.apply(log.error, log, [obj, ...rest])
  } as FastifyBaseLogger['error']
  return watched
}

async function sendWebResponse (reply: FastifyReply, response: Response, logged: Handling, databaseDown: () => Promise<unknown>, schema: SchemaWatch): Promise<void> {
  let text = await response.text()
  if (response.status >= 500) {
    // A 5xx for a database failure, or while Postgres does not answer, is an outage the caller
    // should retry: never an internal error.
    const down = logged.databaseError ?? await databaseDown()
    if (down !== null) throw new DatabaseUnavailableError({ cause: down })
    // A table or column gone from under better-auth (its verdict is only ever checked once): a
    // schema that is not complete now is for the migrations to fix, not a bug. One that cannot be
    // checked leaves the failure as it is.
    if (logged.schemaError !== undefined) {
      const report = await schema.check().catch(() => null)
      if (report !== null && report.state !== 'ok') throw new DatabaseSchemaOutdatedError({ cause: logged.schemaError })
    }
    // The error handler answers it as internal_error: never an empty body. better-auth logged the cause.
    if (!isJsonBody(text, response.headers.get('content-type'))) throw new Error(`better-auth answered ${response.status} without a JSON body`)
  }
  reply.code(response.status)
  for (const [name, value] of response.headers) {
    if (name === 'set-cookie' || name === 'content-length') continue
    reply.header(name, value)
  }
  const cookies = response.headers.getSetCookie()
  if (cookies.length > 0) reply.header('set-cookie', cookies)
  if (response.status >= 400 && (response.headers.get('content-type') ?? '').includes('json')) text = toErrorFormat(text, reply.request.id)
  return reply.send(text)
}

/** Better-Auth hosted on Fastify. Never listens: `server.ts` does. */
export async function buildAuthCore (config: Readonly<AuthCoreConfig>, options: AuthCoreOptions): Promise<FastifyInstance> {
  const app = Fastify({
    logger: options.logger ?? false,
    // better-auth reads and validates the raw body itself.
    bodyLimit: 64 * 1024,
    frameworkErrors: frameworkErrorHandler(),
    clientErrorHandler: clientErrorHandler(),
    // Only the gateway (and backends on the internal network) reach auth-core: their X-Request-Id is kept.
    genReqId: requestIdGenerator(() => true),
    ...SERVE_WHILE_DRAINING
  })
  // First, so that every hook and route registered after it gets its span.
  if (options.tracing !== undefined) await app.register(options.tracing.plugin('auth-core'))
  await app.register(drainPlugin)
  await app.register(requestIdPlugin)
  if (options.metrics !== undefined) await app.register(requestMetrics, { metrics: options.metrics, service: 'auth-core' })
  logPoolErrors(options.pool, app.log)
  const databaseDown = databaseProbe(options.pool)
  const storage = config.redisUrl === undefined ? undefined : await connectSessionStorage(config.redisUrl, app.log)
  if (storage !== undefined) app.addHook('onClose', async () => { storage.close() })
  // Verification and reset links would go nowhere.
  if (config.production && config.smtpUrl === undefined) throw new ConfigError('SMTP_URL', 'is required in production (verification and password-reset mail)')
  const mailer = new Mailer({ smtpUrl: config.smtpUrl, from: config.mailFrom, outboxDir: join(config.dataDir, 'outbox'), log: app.log })
  app.addHook('onClose', async () => { mailer.close() })
  app.decorate('mailer', mailer)
  const auth = createAuth(config, options.pool, { log: watchingDatabaseErrors(app.log), storage, mailer })
  app.decorate('auth', auth)
  // better-auth keys its cached schema verdict by its `database` option: the pool.
  const forgetSchemaVerdict = await loadForgetSchemaVerdict()
  const schema: SchemaWatch = new SchemaWatch(options.pool, expectedSchema(auth.options), { onComplete: (report) => { recovery.complete(report) } })
  const recovery = new SchemaRecovery(schema, () => { forgetSchemaVerdict(options.pool) })
  useErrorFormat(app, AUTH_CORE_ERRORS, { schema })

  await app.register(healthRoutes, { pool: options.pool, schema })
  // better-auth's document for the gateway's `/openapi.json`; the impersonation endpoints only when they answer.
  await app.register(openApiRoutes, { refused: config.adminImpersonation ? new Set<string>() : IMPERSONATION_PATHS })
  // EdDSA client tokens are verified against the gateway's published client keys.
  let keyRing: KeyRing | null = null
  if (config.jwtAlg === 'EdDSA') {
    const ring = new KeyRing(options.pool, config.jwtSecret, { signs: [], onRefreshError: (err) => { app.log.warn({ err }, 'signing keys could not be refreshed') } })
    await ring.start()
    app.addHook('onClose', async () => { ring.stop() })
    keyRing = ring
  }
  await app.register(validateSessionRoutes, { pool: options.pool, jwtSecret: config.jwtSecret, keyRing, recovery })
  await app.register(verifyApiKeyRoutes, { recovery })

  await app.register(async function betterAuthRoutes (scope) {
    scope.removeAllContentTypeParsers()
    scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => { done(null, body) })
    if (options.metrics !== undefined) {
      const { endpoints } = new AuthCoreMetrics(options.metrics.registry)
      const endpointOf = endpointMatcher(Object.values(auth.api).map((endpoint) => (endpoint as { path?: string }).path))
      scope.addHook('onResponse', function recordEndpoint (request, reply, done) {
        const path = request.url.slice(AUTH_CORE_PREFIX.length).split('?')[0]
        endpoints.observe({ endpoint: endpointOf(path), method: methodLabel(request.method), status: reply.statusCode }, reply.elapsedTime / 1000)
        done()
      })
    }

    scope.route({
      method: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'],
      url: `${AUTH_CORE_PREFIX}/*`,
      async handler (request, reply) {
        // better-auth routes on the public path (`PUBLIC_URL/auth/...`) that the browser used.
        const rest = request.url.slice(AUTH_CORE_PREFIX.length)
        const url = new URL(`${PUBLIC_AUTH_PATH}${rest}`, config.publicUrl)
        const body = BODYLESS.has(request.method) || !Buffer.isBuffer(request.body) ? undefined : new Uint8Array(request.body)
        // Postgres refuses NUL in text deep inside better-auth; refused here with a reason instead.
        if (body !== undefined && containsNul(body, request.headers['content-type'])) throw new NulCharacterError()
        // The Request is made per attempt (its body is read once): a schema verdict forgotten after a migration retries the call.
        const { response, logged } = await recovery.run(async () => {
          const attempt: Handling = { databaseError: undefined, schemaError: undefined }
          const answer = await handling.run(attempt, async () => auth.handler(new Request(url, {
            method: request.method,
            headers: toWebHeaders(request),
            body
          })))
          return { response: answer, logged: attempt }
        })
        return sendWebResponse(reply, response, logged, databaseDown, schema)
      }
    })
  })

  return app
}
