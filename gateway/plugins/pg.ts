import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type { Pool } from '../../shared/db.ts'

declare module 'fastify' {
  interface FastifyInstance {
    pg: Pool
  }
}

export interface PgPluginOptions {
  /** The caller's pool: the caller ends it (one pool may serve auth-core and the gateway in one process). */
  pool: Pool
}

async function pgPlugin (app: FastifyInstance, options: PgPluginOptions): Promise<void> {
  app.decorate('pg', options.pool)
}

export default fp(pgPlugin, { name: 'pg' })
