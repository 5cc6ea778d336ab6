import t from 'tap'
import requestIdPlugin from '../../shared/request-id.ts'
import { createServer } from 'node:net'
import { Writable } from 'node:stream'
import Fastify from 'fastify'
import type { FastifyInstance } from 'fastify'
import pg from 'pg'
import { AuthCoreUnavailableError, BadRedirectError, GATEWAY_ERRORS } from '../../gateway/errors.ts'
import { isDatabaseUnavailable, isSchemaError, useErrorFormat } from '../../shared/errors.ts'
import type { ErrorFormatOptions } from '../../shared/errors.ts'
import { createPool } from '../../shared/db.ts'
import type { Teardown } from '../helper.ts'

interface LogLine {
  level: number
  msg: string
  reqId?: string
  err?: { message?: string, code?: string }
}

const GENERIC = 'The server could not complete the request'

/** A tiny app with the gateway's registry whose routes throw what they are given; its log kept. */
async function appThrowing (t: Teardown, errors: Record<string, () => unknown>, setup: (app: FastifyInstance) => void = () => {}, format: ErrorFormatOptions = {}): Promise<{ app: FastifyInstance, logs: LogLine[] }> {
  const logs: LogLine[] = []
  const stream = new Writable({
    write (chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') logs.push(JSON.parse(line) as LogLine)
      callback()
    }
  })
  const app = Fastify({ logger: { level: 'info', stream } })
  await app.register(requestIdPlugin)
  useErrorFormat(app, GATEWAY_ERRORS, format)
  for (const [name, make] of Object.entries(errors)) {
    app.get(`/${name}`, async () => { throw make() })
  }
  app.post('/echo', async (request) => request.body)
  setup(app)
  t.teardown(() => app.close())
  await app.ready()
  return { app, logs }
}

function pgError (code: string, message: string): pg.DatabaseError {
  const err = new pg.DatabaseError(message, message.length, 'error')
  err.code = code
  err.severity = 'ERROR'
  return err
}

function withCode (message: string, code: string, extra: Record<string, unknown> = {}): Error {
  return Object.assign(new Error(message), { code, ...extra })
}

async function closedPort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise<void>((resolve) => server.close(() => { resolve() }))
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

t.test('a 5xx from an error outside the registry says internal_error, never its message, and is logged with its cause', async (t) => {
  const cases: Record<string, () => unknown> = {
    // A code that merely looks like a project code used to have its message sent.
    pg: () => pgError('XX000', 'could not read block 42 in file "base/16384/2619": read only 0 of 8192 bytes'),
    abort: () => withCode('The operation was aborted reading /var/secret/thing', 'ABORT_ERR'),
    tls: () => withCode('self-signed certificate in certificate chain for db.internal:5432', 'SELF_SIGNED_CERT_IN_CHAIN'),
    // The registry's code on an error that is not the registry's class: still not vouched for.
    impostor: () => withCode('undici said 10.0.0.7:8080 timed out', 'UPSTREAM_TIMEOUT', { statusCode: 504 }),
    plain: () => new Error('Cannot read properties of undefined (reading \'id\') at /srv/app/x.ts:12'),
    thrownString: () => 'a string with secret internals'
  }
  const { app, logs } = await appThrowing(t, cases)
  for (const [name, make] of Object.entries(cases)) {
    const response = await app.inject({ method: 'GET', url: `/${name}` })
    const body = response.json() as { error: string, message: string, requestId: string }
    t.ok(response.statusCode >= 500, `${name}: 5xx (got ${response.statusCode})`)
    t.equal(response.headers['content-type'], 'application/json; charset=utf-8', `${name}: JSON`)
    t.same(Object.keys(body).sort(), ['error', 'message', 'requestId'], `${name}: exactly error, message, requestId`)
    t.equal(body.error, 'internal_error', `${name}: internal_error`)
    t.equal(body.message, GENERIC, `${name}: the generic sentence`)
    t.type(body.requestId, 'string')
    const raw = make()
    const secret = raw instanceof Error ? raw.message : String(raw)
    t.notOk(response.body.includes(secret.slice(0, 20)), `${name}: the internal message is not in the body`)
    const logged = logs.find((line) => line.reqId === body.requestId && line.level === 50)
    t.ok(logged, `${name}: logged at error under the same request id`)
    if (raw instanceof Error) t.equal(logged?.err?.message, raw.message, `${name}: the log has the cause`)
  }
})

t.test('registered errors keep their code and message; a 4xx keeps the Fastify mapping', async (t) => {
  const { app } = await appThrowing(t, {
    authCore: () => new AuthCoreUnavailableError(),
    redirect: () => new BadRedirectError(),
    invalidJson: () => withCode('The request body is not valid JSON', 'INVALID_JSON', { statusCode: 400 })
  })
  const authCore = await app.inject({ method: 'GET', url: '/authCore' })
  t.equal(authCore.statusCode, 503)
  t.same(authCore.json(), { error: 'auth_core_unavailable', message: 'The authentication service is unavailable, try again shortly', requestId: authCore.headers['x-request-id'] })
  const redirect = await app.inject({ method: 'GET', url: '/redirect' })
  t.equal(redirect.statusCode, 400)
  t.same(redirect.json(), { error: 'bad_redirect', message: 'The redirect target is not allowed: it must be on PUBLIC_URL or an ALLOWED_ORIGINS origin', requestId: redirect.headers['x-request-id'] })
  const invalid = await app.inject({ method: 'GET', url: '/invalidJson' })
  t.same(invalid.json(), { error: 'invalid_json', message: 'The request body is not valid JSON', requestId: invalid.headers['x-request-id'] })
  const fastifyJson = await app.inject({ method: 'POST', url: '/echo', headers: { 'content-type': 'application/json' }, payload: '{"a":' })
  t.equal(fastifyJson.statusCode, 400)
  t.equal(fastifyJson.json().error, 'invalid_json')
  const media = await app.inject({ method: 'POST', url: '/echo', headers: { 'content-type': 'text/xml' }, payload: '<a/>' })
  t.equal(media.statusCode, 415)
  t.equal(media.json().error, 'unsupported_media_type')
  const missing = await app.inject({ method: 'GET', url: '/nowhere' })
  t.same(missing.json(), { error: 'not_found', message: 'Route GET /nowhere not found', requestId: missing.headers['x-request-id'] })
})

t.test('Postgres connection failures answer 503 database_unavailable', async (t) => {
  const port = await closedPort()
  const pool = createPool(`postgres://postgres@127.0.0.1:${port}/postgres`, { connectionTimeoutMillis: 2000 })
  t.teardown(() => pool.end())
  const { app, logs } = await appThrowing(t, {
    adminShutdown: () => pgError('57P01', 'terminating connection due to administrator command'),
    connectionFailure: () => pgError('08006', 'connection failure to 10.0.0.5'),
    terminated: () => new Error('Connection terminated unexpectedly')
  }, (app) => { app.get('/real', async () => (await pool.query('SELECT 1')).rows) })
  for (const name of ['adminShutdown', 'connectionFailure', 'terminated', 'real']) {
    const response = await app.inject({ method: 'GET', url: `/${name}` })
    t.equal(response.statusCode, 503, `${name}: 503`)
    t.same(response.json(), { error: 'database_unavailable', message: 'The database is unavailable, try again shortly', requestId: response.headers['x-request-id'] }, `${name}: database_unavailable`)
  }
  t.ok(logs.some((line) => line.level === 50 && line.err?.code === 'ECONNREFUSED'), 'the real refusal is logged with its cause')
})

t.test('isDatabaseUnavailable', async (t) => {
  const refused = withCode('connect ECONNREFUSED 127.0.0.1:5432', 'ECONNREFUSED', { errno: -111, syscall: 'connect' })
  const cases: Array<[string, unknown, boolean]> = [
    ['08000 connection_exception', pgError('08000', 'x'), true],
    ['08001 sqlclient_unable_to_establish_sqlconnection', pgError('08001', 'x'), true],
    ['08006 connection_failure', pgError('08006', 'x'), true],
    ['08P01 protocol_violation', pgError('08P01', 'x'), true],
    ['57P01 admin_shutdown', pgError('57P01', 'x'), true],
    ['57P02 crash_shutdown', pgError('57P02', 'x'), true],
    ['57P03 cannot_connect_now', pgError('57P03', 'the database system is starting up'), true],
    ['ECONNREFUSED', refused, true],
    ['ECONNRESET', withCode('read ECONNRESET', 'ECONNRESET'), true],
    ['both families refused (AggregateError)', Object.assign(new AggregateError([refused, refused], ''), { code: 'ECONNREFUSED' }), true],
    ['pg: Connection terminated', new Error('Connection terminated'), true],
    ['pg: Connection terminated unexpectedly', new Error('Connection terminated unexpectedly'), true],
    ['pg-pool: connection timeout', new Error('Connection terminated due to connection timeout', { cause: new Error('timeout expired') }), true],
    ['pg-pool: timeout exceeded', new Error('timeout exceeded when trying to connect'), true],
    ['pg: not queryable', new Error('Client has encountered a connection error and is not queryable'), true],
    ['wrapped in a cause', new Error('Failed query', { cause: pgError('57P01', 'x') }), true],
    // statement_timeout (every pool sets one) and idle_in_transaction_session_timeout.
    ['57014 query_canceled', pgError('57014', 'canceling statement due to statement timeout'), true],
    ['25P03 idle_in_transaction_session_timeout', pgError('25P03', 'terminating connection due to idle-in-transaction timeout'), true],
    ['57P04 database_dropped', pgError('57P04', 'x'), false],
    ['23505 unique_violation', pgError('23505', 'duplicate key'), false],
    ['22021 character_not_in_repertoire', pgError('22021', 'invalid byte sequence for encoding "UTF8": 0x00'), false],
    ['XX000 internal_error', pgError('XX000', 'x'), false],
    ['ABORT_ERR', withCode('aborted', 'ABORT_ERR'), false],
    ['plain error', new Error('boom'), false],
    ['a message merely mentioning it', new Error('upstream said: Connection terminated'), false],
    ['null', null, false],
    ['a string', 'ECONNREFUSED', false],
    ['an object with a numeric code', { code: 8006 }, false]
  ]
  for (const [name, err, expected] of cases) t.equal(isDatabaseUnavailable(err), expected, name)
  const loop: Error & { cause?: unknown } = new Error('loop')
  loop.cause = loop
  t.equal(isDatabaseUnavailable(loop), false, 'a cause cycle ends')
})

t.test('isSchemaError: a missing table, column or schema, or better-auth\'s schema verdict', async (t) => {
  const mismatch = Object.assign(new Error('Database schema mismatch'), { code: 'SCHEMA_MISMATCH', findings: [{ kind: 'missing-table', table: 'user' }] })
  const cases: Array<[string, unknown, boolean]> = [
    ['42P01 undefined_table', pgError('42P01', 'relation "profile" does not exist'), true],
    ['42703 undefined_column', pgError('42703', 'column "generation" does not exist'), true],
    ['3F000 invalid_schema_name', pgError('3F000', 'schema "x" does not exist'), true],
    ['wrapped in a cause', new Error('Failed query', { cause: pgError('42P01', 'x') }), true],
    ['better-auth SchemaMismatchError', mismatch, true],
    ['SCHEMA_MISMATCH without findings', withCode('x', 'SCHEMA_MISMATCH'), false],
    ['23505 unique_violation', pgError('23505', 'duplicate key'), false],
    ['57014 query_canceled', pgError('57014', 'canceling statement due to statement timeout'), false],
    ['plain error mentioning a relation', new Error('relation "x" does not exist'), false],
    ['null', null, false]
  ]
  for (const [name, err, expected] of cases) t.equal(isSchemaError(err), expected, name)
})

t.test('a query failing for a missing table answers 503 database_schema_outdated only while the schema is incomplete', async (t) => {
  let state = 'outdated'
  let checks = 0
  const schema = { check: async () => { checks += 1; if (state === 'down') throw new Error('Postgres does not answer'); return { state } } }
  const { app, logs } = await appThrowing(t, {
    missingTable: () => pgError('42P01', 'relation "profile" does not exist'),
    unique: () => pgError('23505', 'duplicate key value violates unique constraint')
  }, () => {}, { schema })
  const missing = await app.inject({ method: 'GET', url: '/missingTable' })
  t.equal(missing.statusCode, 503)
  t.same(missing.json(), { error: 'database_schema_outdated', message: 'The database schema is missing or out of date, try again once the migrations have run', requestId: missing.headers['x-request-id'] })
  t.ok(logs.some((line) => line.level === 50 && line.err?.code === '42P01'), 'logged at error with its cause')
  t.equal(checks, 1, 'the schema was checked once')

  const unrelated = await app.inject({ method: 'GET', url: '/unique' })
  t.equal(unrelated.json().error, 'internal_error', 'another query failure is not a schema question')
  t.equal(checks, 1, 'and does not check the schema')

  state = 'ok'
  const complete = await app.inject({ method: 'GET', url: '/missingTable' })
  t.equal(complete.statusCode, 500, 'a missing table while the schema is complete is a bug: internal_error')
  t.equal(complete.json().error, 'internal_error')

  state = 'down'
  const unknown = await app.inject({ method: 'GET', url: '/missingTable' })
  t.equal(unknown.statusCode, 500, 'a schema that cannot be checked leaves the failure as it is')
})
