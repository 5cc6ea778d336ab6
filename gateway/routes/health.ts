import type { FastifyInstance } from 'fastify'
import { AUTH_LOOKUP_TIMEOUT_MS } from '../proxy/upstream-client.ts'
import { isSchemaCheckState, logSchemaCheck, probe, probeSchema, sendDraining, sendNotReady, worseSchemaState } from '../../shared/readiness.ts'
import type { CheckResult, SchemaCheckState } from '../../shared/readiness.ts'

interface AuthCoreReadiness {
  postgres: 'ok' | 'down'
  schema: SchemaCheckState
}

/**
 * auth-core's `GET /ready`: 200, or 503 with its own checks (it is up; what it lacks is reported as
 * such). Anything else, or no answer, is auth-core down.
 */
async function askAuthCore (app: FastifyInstance): Promise<AuthCoreReadiness> {
  const { statusCode, body } = await app.authCore.request({ method: 'GET', path: '/ready', headersTimeout: AUTH_LOOKUP_TIMEOUT_MS, bodyTimeout: AUTH_LOOKUP_TIMEOUT_MS })
  const text = await body.text()
  if (statusCode === 200) return { postgres: 'ok', schema: 'ok' }
  let checks: { postgres?: unknown, schema?: unknown } | undefined
  try {
    checks = (JSON.parse(text) as { checks?: typeof checks }).checks
  } catch {}
  const postgres = checks?.postgres
  if (statusCode === 503 && (postgres === 'ok' || postgres === 'down') && isSchemaCheckState(checks?.schema)) return { postgres, schema: checks.schema }
  throw new Error(`auth-core /ready answered ${statusCode}`)
}

/**
 * `GET /health` (liveness, with the public URL) and `GET /ready`: Postgres answers, the schema is complete (the gateway's
 * migrations here; better-auth's tables as auth-core reports them) and auth-core is ready. `/ready`
 * is public: it says `ok`/`down` per dependency and the schema's state, and why goes to the log only.
 * The schema is inspected at most once per `DEFAULT_SCHEMA_CHECK_TTL_MS`, so a migration run by
 * another process is seen at the next probe, without a restart.
 */
export default async function healthRoutes (app: FastifyInstance, options: { publicUrl: string }): Promise<void> {
  // `publicUrl` (PUBLIC_URL, public by definition) tells a client on any address of the gateway
  // which origin its writes must come from: the smoke checker's default `Origin`.
  const health = Object.freeze({ status: 'ok', publicUrl: options.publicUrl })
  app.get('/health', {
    schema: {
      summary: 'Liveness: the process answers',
      tags: ['Health'],
      response: { 200: { description: 'Always, while the process runs', type: 'object', required: ['status', 'publicUrl'], properties: { status: { type: 'string', enum: ['ok'] }, publicUrl: { type: 'string', description: '`PUBLIC_URL`' } } } }
    }
  }, async () => health)

  app.get('/ready', {
    schema: {
      summary: 'Readiness: Postgres and auth-core answer and the schema is migrated',
      description: '200 `{ "status": "ready", "checks": { "postgres", "schema", "authCore" } }`; else 503 `not_ready` with the same `checks`, each `ok` or `down` (the schema: `ok`, `missing`, `outdated` or `unknown`), or `status: "draining"` while shutting down. Why goes to the log only.',
      tags: ['Health']
    }
  }, async (request, reply) => {
    if (app.draining) return sendDraining(reply)
    const [postgres, schema, authCore] = await Promise.all([
      probe('postgres', async () => { await app.pg.query('SELECT 1') }, AUTH_LOOKUP_TIMEOUT_MS),
      probeSchema(app.schema, AUTH_LOOKUP_TIMEOUT_MS),
      probe('auth-core', async () => askAuthCore(app), AUTH_LOOKUP_TIMEOUT_MS)
    ])
    // auth-core's own view of the schema (better-auth's tables and the migrations), when it answers.
    const reported: SchemaCheckState = authCore.ok ? authCore.value.schema : 'ok'
    // Without Postgres the schema is not vouched for, even from the short cache.
    const schemaState = postgres.ok ? worseSchemaState(schema.state, reported) : 'unknown'
    // An auth-core whose Postgres is down is up, and the gateway's own check names Postgres; unless
    // the gateway's Postgres answers, when auth-core is the one that cannot serve.
    const authCoreCheck: CheckResult = authCore.ok && authCore.value.postgres === 'down' && postgres.ok
      ? { ok: false, err: new Error('auth-core /ready: its Postgres does not answer') }
      : authCore
    const checks = { postgres: postgres.ok ? 'ok' : 'down', schema: schemaState, authCore: authCoreCheck.ok ? 'ok' : 'down' }
    const failed = Object.entries({ postgres, authCore: authCoreCheck }).flatMap(([name, result]) => result.ok ? [] : [{ name, err: result.err }])
    if (failed.length === 0 && schemaState === 'ok') return { status: 'ready', checks }
    for (const { name, err } of failed) request.log.warn({ dependency: name, err }, 'readiness check failed')
    // With Postgres down, its own line says why the schema is unknown.
    if (postgres.ok) {
      logSchemaCheck(request, schema)
      if (reported !== 'ok') request.log.warn({ dependency: 'schema', state: reported, reportedBy: 'auth-core' }, 'readiness check failed')
    }
    return sendNotReady(reply, failed.map(({ name }) => name), schemaState, checks)
  })
}
