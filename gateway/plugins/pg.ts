import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type { Pool } from '../../shared/db.ts'

declare module 'fastify' {
  interface FastifyInstance {
    pg: Pool
  }
}

export interface PgPluginOptions {
  pool: Pool
  /** End the pool when the app closes; false when the caller owns it. @default false */
  closePool?: boolean
}

async function pgPlugin (app: FastifyInstance, options: PgPluginOptions): Promise<void> {
  app.decorate('pg', options.pool)
  if (options.closePool === true) app.addHook('onClose', async () => { await options.pool.end() })
}

export default fp(pgPlugin, { name: 'pg' })
