import type { FastifyInstance } from 'fastify'
import type { Pool } from '../../shared/db.ts'
import { logSchemaCheck, probe, probeSchema, sendDraining, sendNotReady } from '../../shared/readiness.ts'
import type { SchemaWatch } from '../../shared/schema-status.ts'

export interface HealthRoutesOptions {
  pool: Pool
  /** better-auth's tables and the gateway's migrations. */
  schema: SchemaWatch
}

/**
 * `GET /health` (the process answers) and `GET /ready`: Postgres answers and holds the schema
 * better-auth and validate-session need. The gateway's `/ready` asks this one and reports its schema.
 */
export default async function healthRoutes (app: FastifyInstance, options: HealthRoutesOptions): Promise<void> {
  app.get('/health', async () => ({ status: 'ok' }))

  app.get('/ready', async (request, reply) => {
    if (app.draining) return sendDraining(reply)
    const [postgres, schema] = await Promise.all([
      probe('postgres', async () => { await options.pool.query('SELECT 1') }),
      probeSchema(options.schema)
    ])
    // Without Postgres the schema is not vouched for, even from the short cache.
    const schemaState = postgres.ok ? schema.state : 'unknown'
    const checks = { postgres: postgres.ok ? 'ok' : 'down', schema: schemaState }
    if (postgres.ok && schemaState === 'ok') return { status: 'ready', checks }
    if (!postgres.ok) request.log.warn({ dependency: 'postgres', err: postgres.err }, 'readiness check failed')
    else logSchemaCheck(request, schema)
    return sendNotReady(reply, postgres.ok ? [] : ['postgres'], schemaState, checks)
  })
}
