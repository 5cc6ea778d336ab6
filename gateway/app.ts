import Fastify from 'fastify'
import type { FastifyInstance, FastifyServerOptions } from 'fastify'
import type { GatewayConfig } from '../shared/config.ts'
import type { Pool } from '../shared/db.ts'
import { clientErrorHandler, frameworkErrorHandler, useErrorFormat } from '../shared/errors.ts'
import { earlyErrorHeaders, GATEWAY_ERRORS } from './errors.ts'
import { writeOrigins } from './guards/csrf.ts'
import { DEFAULT_RULES } from './access/rules.ts'
import upstreamsPlugin from './plugins/upstreams.ts'
import identityPlugin from './plugins/identity.ts'
import pgPlugin from './plugins/pg.ts'
import drainPlugin from '../shared/drain.ts'
import { securityHeaders } from './stages/hygiene.ts'
import { rewriteUrl } from './stages/normalise.ts'
import { registerPipeline } from './pipeline.ts'
import authProxy from './routes/auth-proxy.ts'
import ragRoutes from './routes/rag.ts'
import appUpstreamRoutes from './routes/app-upstream.ts'
import healthRoutes from './routes/health.ts'
import profileRoutes from './routes/profile/index.ts'
import sessionEvents from './plugins/session-events.ts'
import tokenRoutes from './routes/tokens.ts'
import validateSessionRoutes from './routes/validate-session.ts'
import userProfileRoutes from './routes/user-profile.ts'

export interface GatewayOptions {
  pool: Pool
  logger?: FastifyServerOptions['logger']
  /** Timeout of RAG and app upstream calls, in milliseconds. @default 30000 */
  upstreamTimeoutMs?: number
}

/** The gateway, built but not listening (`server.ts` listens; tests inject or listen on port 0). */
export async function buildGateway (config: Readonly<GatewayConfig>, options: GatewayOptions): Promise<FastifyInstance> {
  const app = Fastify({
    logger: options.logger ?? false,
    // Fastify trusts no hop for a bare number, so a hop count is given as proxy-addr's (address, hop) test.
    trustProxy: typeof config.trustProxy === 'number' ? ((hops: number) => (_address: string, hop: number) => hop < hops)(config.trustProxy) : config.trustProxy === false ? false : [...config.trustProxy],
    bodyLimit: 16 * 1024,
    rewriteUrl,
    // Answered before routing (so before the CORS and hygiene hooks): the headers are added here.
    frameworkErrors: frameworkErrorHandler(earlyErrorHeaders(securityHeaders(config.publicUrl), config.allowedOrigins)),
    clientErrorHandler: clientErrorHandler(securityHeaders(config.publicUrl))
  })
  useErrorFormat(app, GATEWAY_ERRORS)

  await app.register(drainPlugin)
  await app.register(pgPlugin, { pool: options.pool })
  await app.register(upstreamsPlugin, { authCoreUrl: config.authCoreUrl, ragUpstreamUrl: config.ragUpstreamUrl, appUpstreamUrl: config.appUpstreamUrl, timeoutMs: options.upstreamTimeoutMs })
  await app.register(identityPlugin, { jwtSecret: config.jwtSecret, jwtAlg: config.jwtAlg, sessionCacheTtl: config.sessionCacheTtl, userFields: config.userFields, redisUrl: config.redisUrl })
  await registerPipeline(app, config, DEFAULT_RULES)

  await app.register(healthRoutes)
  await app.register(authProxy, { authCoreUrl: config.authCoreUrl, publicUrl: config.publicUrl, allowedOrigins: config.allowedOrigins })
  await app.register(profileRoutes, { consentVersion: config.consentVersion, allowedOrigins: config.allowedOrigins, publicUrl: config.publicUrl, claimsCacheTtl: config.sessionCacheTtl })
  await app.register(sessionEvents)
  await app.register(tokenRoutes)
  await app.register(validateSessionRoutes)
  await app.register(userProfileRoutes, { publicUrl: config.publicUrl })
  await app.register(ragRoutes, { tokens: config.upstreamTokens.rag, jwtSecret: config.jwtSecret, publicUrl: config.publicUrl })
  await app.register(appUpstreamRoutes, { tokens: config.upstreamTokens.app, jwtSecret: config.jwtSecret, publicUrl: config.publicUrl, writeOrigins: writeOrigins(config.allowedOrigins, config.publicUrl) })
  return app
}
