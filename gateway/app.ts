import Fastify from 'fastify'
import type { FastifyInstance, FastifyServerOptions } from 'fastify'
import type { IncomingMessage } from 'node:http'
import type { Config } from '../shared/config.ts'
import type { Pool } from '../shared/db.ts'
import { useErrorFormat } from '../shared/errors.ts'
import { DEFAULT_RULES } from './access/rules.ts'
import accessPlugin from './plugins/access.ts'
import authCoreClient from './plugins/auth-core-client.ts'
import corsPlugin from './plugins/cors.ts'
import identityPlugin from './plugins/identity.ts'
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
  await app.register(identityPlugin, { jwtSecret: config.jwtSecret, sessionCacheTtl: config.sessionCacheTtl, userFields: config.userFields })
  // CORS first, so 401/403/429 answers to an allowed origin still carry its headers.
  await app.register(corsPlugin, { allowedOrigins: config.allowedOrigins })
  await app.register(accessPlugin, { rules: DEFAULT_RULES })

  await app.register(healthRoutes)
  await app.register(authProxy, { authCoreUrl: config.authCoreUrl })
  // routes: profile (issue 4) — register here
  // routes: tokens and validate-session (issue 5) — register here
  // routes: RAG and app upstream (issue 3) — register here
  return app
}
