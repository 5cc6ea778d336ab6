import Fastify from 'fastify'
import type { FastifyInstance, FastifyServerOptions } from 'fastify'
import type { IncomingMessage } from 'node:http'
import type { Config } from '../shared/config.ts'
import type { Pool } from '../shared/db.ts'
import { useErrorFormat } from '../shared/errors.ts'
import authCoreClient from './plugins/auth-core-client.ts'
import corsPlugin from './plugins/cors.ts'
import pgPlugin from './plugins/pg.ts'
import authProxy, { resolveAuthAlias } from './routes/auth-proxy.ts'
import healthRoutes from './routes/health.ts'

export interface GatewayOptions {
  pool: Pool
  logger?: FastifyServerOptions['logger']
}

/** The single place a request's URL is rewritten, before routing and before proxying. */
export function rewriteUrl (req: IncomingMessage): string {
  const url = req.url ?? '/'
  const queryAt = url.indexOf('?')
  const path = queryAt === -1 ? url : url.slice(0, queryAt)
  const target = resolveAuthAlias(req.method ?? 'GET', path)
  return target === path ? url : target + (queryAt === -1 ? '' : url.slice(queryAt))
}

/** The gateway, built but not listening (`server.ts` listens; tests inject or listen on port 0). */
export async function buildGateway (config: Readonly<Config>, options: GatewayOptions): Promise<FastifyInstance> {
  const app = Fastify({
    logger: options.logger ?? false,
    trustProxy: config.trustProxy,
    bodyLimit: 16 * 1024,
    rewriteUrl
  })
  useErrorFormat(app)

  await app.register(pgPlugin, { pool: options.pool })
  await app.register(authCoreClient, { authCoreUrl: config.authCoreUrl })
  await app.register(corsPlugin, { allowedOrigins: config.allowedOrigins })
  await app.register(healthRoutes)
  await app.register(authProxy, { authCoreUrl: config.authCoreUrl })
  return app
}
