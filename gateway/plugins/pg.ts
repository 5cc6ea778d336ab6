import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type { Pool } from '../../shared/db.ts'
import type { SchemaWatch } from '../../shared/schema-status.ts'

declare module 'fastify' {
  interface FastifyInstance {
    pg: Pool
    /** Whether the database holds the gateway's migrations: asked by `/ready` and after a query failed for a missing table. */
    schema: SchemaWatch
  }
}

export interface PgPluginOptions {
  /** The caller's pool: the caller ends it (one pool may serve auth-core and the gateway in one process). */
  pool: Pool
  schema: SchemaWatch
}

async function pgPlugin (app: FastifyInstance, options: PgPluginOptions): Promise<void> {
  app.decorate('pg', options.pool)
  app.decorate('schema', options.schema)
}

export default fp(pgPlugin, { name: 'pg' })
