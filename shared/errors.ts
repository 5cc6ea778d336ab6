import createError from '@fastify/error'
import { randomUUID } from 'node:crypto'
import { STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { REQUEST_ID_HEADER } from './request-id.ts'

/** Every error body the project sends, with the request's id (`X-Request-Id`) to quote when reporting it. */
export interface ErrorBody {
  error: string
  message: string
  requestId?: string
}

/** An error class made by `@fastify/error`'s `createError`, as a registry holds it. */
export type ErrorClass = createError.FastifyErrorConstructor<{ code: string, statusCode?: number }, [unknown?, unknown?, unknown?]>

export interface ErrorDescription {
  type: ErrorClass
  /** When a client gets it, for the docs. */
  meaning: string
  /** What the caller (or the operator) should do, for the docs. */
  action: string
}

export interface ErrorEntry extends ErrorDescription {
  /** UPPER_SNAKE; the body's `error` is this lower-cased. */
  code: string
  status: number
  /** The message as declared (`%s` where an argument goes). */
  message: string
}

/** Every code one service answers, each declared once: only these have their message sent on a 5xx. */
export interface ErrorRegistry {
  readonly service: string
  readonly entries: readonly ErrorEntry[]
  /** The entry of a declared code. */
  get: (code: string | undefined) => ErrorEntry | undefined
  /** The entry of an error this service made: its class, not merely a code that looks the same. */
  owner: (err: unknown) => ErrorEntry | undefined
}

/** Both services answer these; every registry has them. */
export const InternalError = createError('INTERNAL_ERROR', 'The server could not complete the request', 500)
export const DatabaseUnavailableError = createError('DATABASE_UNAVAILABLE', 'The database is unavailable, try again shortly', 503)
export const DatabaseSchemaOutdatedError = createError('DATABASE_SCHEMA_OUTDATED', 'The database schema is missing or out of date, try again once the migrations have run', 503)
export const NotReadyError = createError('NOT_READY', 'Not ready: %s', 503)

const SHARED_ERRORS: readonly ErrorDescription[] = [
  {
    type: InternalError,
    meaning: 'anything the service did not expect; the log has the cause under the body\'s `requestId`',
    action: 'report it with the `requestId`'
  },
  {
    type: DatabaseUnavailableError,
    meaning: 'Postgres refuses or drops connections (down, restarting, or out of reach), or a query ran past `DATABASE_STATEMENT_TIMEOUT`',
    action: 'retry shortly; check Postgres'
  },
  {
    type: DatabaseSchemaOutdatedError,
    meaning: 'the database lacks tables, columns or migrations this version needs (never migrated, or `npm run migrate` not run since an upgrade); answered until the migrations have run, no restart needed',
    action: 'run `npm run migrate`; retry'
  },
  {
    type: NotReadyError,
    meaning: '`GET /ready`: Postgres or auth-core does not answer, or the database schema is missing or outdated (named, with `checks`), or the process is shutting down (`status: "draining"`)',
    action: 'check the one named; the log says why (a draining process is on its way out: send elsewhere)'
  }
]

export function errorRegistry (service: string, described: readonly ErrorDescription[]): ErrorRegistry {
  const byCode = new Map<string, ErrorEntry>()
  for (const description of [...described, ...SHARED_ERRORS]) {
    // Made once, without arguments, to read the class's code, status and message back.
    const sample = new description.type()
    const status = sample.statusCode ?? 500
    if (byCode.has(sample.code)) throw new Error(`${service} errors: ${sample.code} is declared twice`)
    byCode.set(sample.code, { ...description, code: sample.code, status, message: sample.message })
  }
  const entries = Object.freeze([...byCode.values()])
  return Object.freeze({
    service,
    entries,
    get: (code: string | undefined) => code === undefined ? undefined : byCode.get(code),
    owner (err: unknown) {
      const entry = byCode.get(codeOf(err) ?? '')
      return entry !== undefined && err instanceof entry.type ? entry : undefined
    }
  })
}

export interface FrameworkError {
  /** Fastify's code, or Node's for what its HTTP parser refuses before Fastify runs. */
  source: string
  status: number
  /** The public code. */
  code: string
  /** Sent instead of Fastify's or Node's own message, which would echo the request. */
  message?: string
  meaning: string
  action: string
}

/** Fastify's own 4xx codes (and Node's parser errors), turned into the public ones. */
export const FRAMEWORK_ERRORS: readonly FrameworkError[] = Object.freeze([
  { source: 'FST_ERR_BAD_URL', status: 400, code: 'bad_request', message: 'The request URL is not valid: it has a malformed percent-encoding', meaning: 'the URL does not decode (e.g. `%C0%AF`)', action: 'encode the URL properly' },
  { source: 'FST_ERR_ASYNC_CONSTRAINT', status: 400, code: 'bad_request', message: 'The request could not be routed', meaning: 'a route constraint could not be checked', action: 'fix the request' },
  { source: 'FST_ERR_MAX_PARAM_LENGTH', status: 414, code: 'uri_too_long', message: 'A path segment of the request URL is too long', meaning: 'a path parameter over Fastify\'s length limit', action: 'send a shorter path' },
  { source: 'FST_ERR_CTP_INVALID_CONTENT_LENGTH', status: 400, code: 'bad_request', meaning: 'the body\'s size differs from `Content-Length`', action: 'fix the request' },
  { source: 'FST_ERR_CTP_EMPTY_JSON_BODY', status: 400, code: 'bad_request', meaning: 'an empty body with `Content-Type: application/json`', action: 'send a JSON body or no content type' },
  { source: 'FST_ERR_CTP_INVALID_JSON_BODY', status: 400, code: 'invalid_json', meaning: 'the body is not valid JSON', action: 'send valid JSON' },
  { source: 'FST_ERR_VALIDATION', status: 400, code: 'validation_failed', meaning: 'the body or query fails the route\'s schema; the message names the field', action: 'fix the field' },
  { source: 'FST_ERR_NOT_FOUND', status: 404, code: 'not_found', meaning: 'no such route', action: 'check the method and path' },
  { source: 'FST_ERR_CTP_BODY_TOO_LARGE', status: 413, code: 'payload_too_large', meaning: 'body over the route\'s limit (gateway 16 KiB, app upstream 1 MiB; auth-core 64 KiB)', action: 'send less' },
  { source: 'FST_ERR_CTP_INVALID_MEDIA_TYPE', status: 415, code: 'unsupported_media_type', meaning: 'the route does not take this `Content-Type` (JSON routes take `application/json`)', action: 'send JSON' },
  { source: 'HPE_HEADER_OVERFLOW', status: 431, code: 'headers_too_large', message: 'The request headers are too large', meaning: 'request line and headers over Node\'s 16 KiB limit (often too many cookies)', action: 'send fewer or smaller headers' },
  { source: 'ERR_HTTP_REQUEST_TIMEOUT', status: 408, code: 'request_timeout', message: 'The request was not received in time', meaning: 'the client did not finish sending the request in time', action: 'retry' },
  { source: 'HPE_*', status: 400, code: 'bad_request', message: 'The request is not valid HTTP', meaning: 'Node\'s HTTP parser refused the request (e.g. a malformed header)', action: 'fix the client' }
].map((entry) => Object.freeze(entry)))

const FRAMEWORK_BY_SOURCE = new Map(FRAMEWORK_ERRORS.map((entry) => [entry.source, entry]))

// The public code of a 4xx nobody declared (a plugin's), by its status.
const STATUS_4XX: Record<number, string> = {
  400: 'bad_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  408: 'request_timeout',
  413: 'payload_too_large',
  414: 'uri_too_long',
  415: 'unsupported_media_type',
  429: 'rate_limited',
  431: 'headers_too_large'
}

function codeOf (err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null | undefined)?.code
  return typeof code === 'string' ? code : undefined
}

// SQLSTATE class 08 (connection exception), the shutdown / starting-up states of class 57, a
// statement cancelled (57014: `statement_timeout`) and a session ended for idling in a transaction (25P03).
const PG_UNAVAILABLE = /^(08[0-9A-Z]{3}|57P0[123]|57014|25P03)$/
// EPIPE: a query written to a connection the server already closed (a killed postmaster).
const SOCKET_FAILURES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH'])
// pg and pg-pool report a lost or timed-out connection as plain errors, by message only.
const PG_CONNECTION_MESSAGES = /^(Connection terminated\b|timeout exceeded when trying to connect$|Client has encountered a connection error and is not queryable$)/

/** Whether an error (or its cause) says Postgres cannot be reached, rather than that a query failed. */
export function isDatabaseUnavailable (err: unknown): boolean {
  const seen = new Set<unknown>()
  for (let current = err; current !== null && typeof current === 'object' && !seen.has(current); current = (current as { cause?: unknown }).cause) {
    seen.add(current)
    const code = codeOf(current)
    if (code !== undefined && (PG_UNAVAILABLE.test(code) || SOCKET_FAILURES.has(code))) return true
    if (current instanceof Error && PG_CONNECTION_MESSAGES.test(current.message)) return true
  }
  return false
}

// A table, column or schema the query names does not exist (42P01, 42703, 3F000).
const PG_SCHEMA_MISSING = new Set(['42P01', '42703', '3F000'])

/** better-auth's verdict that the database lacks what it writes (`SchemaMismatchError`, thrown before any query). */
export function isSchemaMismatch (err: unknown): boolean {
  return err instanceof Error && codeOf(err) === 'SCHEMA_MISMATCH' && Array.isArray((err as { findings?: unknown }).findings)
}

/** Whether an error (or its cause) says the database lacks a table or column the code uses. */
export function isSchemaError (err: unknown): boolean {
  const seen = new Set<unknown>()
  for (let current = err; current !== null && typeof current === 'object' && !seen.has(current); current = (current as { cause?: unknown }).cause) {
    seen.add(current)
    if (isSchemaMismatch(current)) return true
    const code = codeOf(current)
    if (code !== undefined && PG_SCHEMA_MISSING.has(code)) return true
  }
  return false
}

/** What the error handler asks when a query failed for a missing table or column (a `SchemaWatch`). */
export interface SchemaChecker {
  check: () => Promise<{ state: string }>
}

export interface ErrorFormatOptions {
  /**
   * Asked after a query failed for a missing table or column: unless the schema is complete, the
   * answer is 503 `database_schema_outdated`, not an internal error.
   */
  schema?: SchemaChecker
}

function statusOf (err: { statusCode?: unknown }): number | undefined {
  const status = err.statusCode
  return typeof status === 'number' && Number.isInteger(status) && status >= 400 && status < 600 ? status : undefined
}

/** Sends `{ error, message, requestId }`. */
export function sendError (reply: FastifyReply, status: number, body: Omit<ErrorBody, 'requestId'>): FastifyReply {
  return reply.code(status).type('application/json; charset=utf-8').send({ ...body, requestId: reply.request.id } satisfies ErrorBody)
}

/**
 * The error handler of a service: only `registry`'s errors have their own message sent on a 5xx. With
 * `options.schema`, a query that failed for a missing table or column is answered once the schema has
 * been checked (asynchronously, from a short cache): 503 `database_schema_outdated` unless it is complete.
 */
export function errorHandler (registry: ErrorRegistry, options: ErrorFormatOptions = {}): (this: FastifyInstance, err: FastifyError, request: FastifyRequest, reply: FastifyReply) => void | Promise<void> {
  // `errorRegistry` adds these to every registry.
  const internal = registry.get('INTERNAL_ERROR') as ErrorEntry
  const database = registry.get('DATABASE_UNAVAILABLE') as ErrorEntry
  const outdated = registry.get('DATABASE_SCHEMA_OUTDATED') as ErrorEntry
  const schema = options.schema
  function answerUnowned (err: FastifyError, error: Partial<FastifyError>, status: number, request: FastifyRequest, reply: FastifyReply): void {
    const unavailable = isDatabaseUnavailable(err)
    if (status >= 500 || unavailable) {
      request.log.error({ err }, 'request failed')
      if (unavailable) {
        sendError(reply, database.status, { error: 'database_unavailable', message: database.message })
      } else {
        sendError(reply, status, { error: 'internal_error', message: internal.message })
      }
      return
    }
    request.log.info({ err: { code: error.code, message: error.message } }, 'request rejected')
    const code = FRAMEWORK_BY_SOURCE.get(error.code ?? '')?.code ?? registry.get(error.code)?.code.toLowerCase() ?? STATUS_4XX[status] ?? 'bad_request'
    sendError(reply, status, { error: code, message: error.message !== undefined && error.message !== '' ? error.message : STATUS_CODES[status] ?? 'Bad Request' })
  }
  return function handleError (err, request, reply) {
    // A thrown non-error (a string, null) still answers, as an internal error.
    const error: Partial<FastifyError> = err !== null && typeof err === 'object' ? err : {}
    const headers = (error as { headers?: Record<string, string> }).headers
    if (headers !== undefined && typeof headers === 'object') reply.headers(headers)
    const owned = registry.owner(err)
    const status = statusOf(error) ?? owned?.status ?? 500
    if (owned !== undefined) {
      if (status >= 500) request.log.error({ err }, 'request failed')
      else request.log.info({ err: { code: owned.code, message: error.message } }, 'request rejected')
      sendError(reply, status, { error: owned.code.toLowerCase(), message: error.message ?? owned.message })
      return
    }
    if (schema !== undefined && status >= 500 && isSchemaError(err) && !isDatabaseUnavailable(err)) {
      // A schema that cannot be checked leaves the failure as it is: an internal error.
      return schema.check().then((report) => report.state !== 'ok', () => false).then((incomplete) => {
        if (!incomplete) return answerUnowned(err, error, status, request, reply)
        request.log.error({ err }, 'request failed')
        sendError(reply, outdated.status, { error: 'database_schema_outdated', message: outdated.message })
      })
    }
    answerUnowned(err, error, status, request, reply)
  }
}

export function notFoundHandler (request: FastifyRequest, reply: FastifyReply): void {
  sendError(reply, 404, { error: 'not_found', message: `Route ${request.method} ${request.url.split('?')[0]} not found` })
}

/** Installs the project's error format on a Fastify instance, for the errors of `registry`'s service. */
export function useErrorFormat (app: FastifyInstance, registry: ErrorRegistry, options: ErrorFormatOptions = {}): void {
  app.setErrorHandler(errorHandler(registry, options))
  app.setNotFoundHandler(notFoundHandler)
}

/** Headers for an answer given before the routes' hooks ran (the security headers, CORS). */
export type EarlyHeaders = (request: FastifyRequest) => Readonly<Record<string, string>>

/**
 * Fastify's `frameworkErrors` option: a URL that does not decode (and the other errors Fastify
 * raises before routing, so before any hook) answered in the project format, without echoing it.
 */
export function frameworkErrorHandler (headersFor: EarlyHeaders = () => ({})): (err: FastifyError, request: FastifyRequest, reply: FastifyReply) => void {
  return function handleFrameworkError (err, request, reply) {
    const entry = FRAMEWORK_BY_SOURCE.get(err.code)
    request.log.info({ err: { code: err.code, message: err.message } }, 'request rejected')
    // Before routing, so before the hook that sets it on every other answer.
    reply.header(REQUEST_ID_HEADER, request.id)
    reply.headers(headersFor(request))
    sendError(reply, entry?.status ?? 400, { error: entry?.code ?? 'bad_request', message: entry?.message ?? 'The request is not valid' })
  }
}

/** What Node's `clientError` hands over (Fastify's `ConnectionError`). */
interface ClientError extends Error {
  code?: string
}

/**
 * Fastify's `clientErrorHandler` option: what Node's HTTP parser refuses (headers too large, a
 * malformed request) answered on the raw socket in the project format, with `headers` added.
 */
export function clientErrorHandler (headers: Readonly<Record<string, string>> = {}): (this: FastifyInstance, err: ClientError, socket: Socket) => void {
  const extra = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('')
  return function handleClientError (err, socket) {
    // A reset connection has no one to answer.
    if (err.code === 'ECONNRESET' || socket.destroyed) return
    const entry = FRAMEWORK_BY_SOURCE.get(err.code ?? '') ?? (FRAMEWORK_BY_SOURCE.get('HPE_*') as FrameworkError)
    // No request was made of it, so no id either: one of its own, to find the log line by.
    const requestId = randomUUID()
    this.log.debug({ err, reqId: requestId }, 'client error')
    if (socket.writable) {
      const body = JSON.stringify({ error: entry.code, message: entry.message ?? 'The request is not valid HTTP', requestId } satisfies ErrorBody)
      socket.write(`HTTP/1.1 ${entry.status} ${STATUS_CODES[entry.status] ?? ''}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n${REQUEST_ID_HEADER}: ${requestId}\r\n${extra}\r\n${body}`)
    }
    socket.destroy()
  }
}
