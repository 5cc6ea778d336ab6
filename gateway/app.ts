import Fastify from 'fastify'
import type { FastifyInstance, FastifyServerOptions } from 'fastify'
import type { GatewayConfig } from '../shared/config.ts'
import type { Pool } from '../shared/db.ts'
import { clientErrorHandler, frameworkErrorHandler, useErrorFormat } from '../shared/errors.ts'
import { expectedSchema, SchemaWatch } from '../shared/schema-status.ts'
import { earlyErrorHeaders, GATEWAY_ERRORS } from './errors.ts'
import { writeOrigins } from './guards/csrf.ts'
import { DEFAULT_RULES } from './access/rules.ts'
import { loadAccessRules } from './access/rules-file.ts'
import { APP_ROUTE } from './route-paths.ts'
import upstreamsPlugin from './plugins/upstreams.ts'
import identityPlugin from './plugins/identity.ts'
import pgPlugin from './plugins/pg.ts'
import drainPlugin, { SERVE_WHILE_DRAINING } from '../shared/drain.ts'
import { requestIdGenerator } from '../shared/request-id.ts'
import requestMetrics from '../shared/metrics.ts'
import type { ProcessMetrics } from '../shared/metrics.ts'
import type { ProcessTracing } from '../shared/tracing.ts'
import { GatewayMetrics } from './metrics.ts'
import { trustedPeer } from './client-address.ts'
import { securityHeaders } from './stages/hygiene.ts'
import { rewriteUrl } from './stages/normalise.ts'
import { registerPipeline } from './pipeline.ts'
import type { UpstreamLimits } from './proxy/upstream-client.ts'
import authProxy from './routes/auth-proxy.ts'
import ragRoutes from './routes/rag.ts'
import appUpstreamRoutes from './routes/app-upstream.ts'
import healthRoutes from './routes/health.ts'
import profileRoutes from './routes/profile/index.ts'
import sessionEvents from './plugins/session-events.ts'
import tokenRoutes from './routes/tokens.ts'
import tokenLoginRoutes from './routes/token-login.ts'
import validateSessionRoutes from './routes/validate-session.ts'
import userProfileRoutes from './routes/user-profile.ts'
import adminAuditRoutes from './routes/admin-audit.ts'
import sessionsRoutes from './routes/sessions.ts'
import apiDocsPlugin from './plugins/api-docs.ts'
import apiDocsRoutes from './routes/api-docs.ts'

export interface GatewayOptions {
  pool: Pool
  logger?: FastifyServerOptions['logger']
  /** The deadline of RAG and app upstream calls, in milliseconds, over `UPSTREAM_TIMEOUT`. @default 30000 */
  upstreamTimeoutMs?: number
  /** The process's metrics (`METRICS_PORT`); unset: none are kept. */
  metrics?: ProcessMetrics
  /** The process's tracing (`OTEL_EXPORTER_OTLP_ENDPOINT`); unset: no spans. */
  tracing?: ProcessTracing
}

/** How often Node looks for requests past `REQUEST_TIMEOUT`/`HEADERS_TIMEOUT` (its default, 30 s, would let them run that much over). */
function connectionsCheckingInterval (config: Readonly<GatewayConfig>): number {
  return Math.max(10, Math.min(1000, Math.floor(config.headersTimeout / 4)))
}

function upstreamLimits (config: Readonly<GatewayConfig>, options: GatewayOptions): Readonly<UpstreamLimits> {
  return Object.freeze({
    timeoutMs: options.upstreamTimeoutMs ?? config.upstreamTimeout,
    idleTimeoutMs: config.upstreamIdleTimeout,
    maxBufferedBytes: config.upstreamMaxBufferedBytes
  })
}

/** The gateway, built but not listening (`server.ts` listens; tests inject or listen on port 0). */
export async function buildGateway (config: Readonly<GatewayConfig>, options: GatewayOptions): Promise<FastifyInstance> {
  // Read before anything opens (a bad file throws a ConfigError): ACCESS_RULES_FILE refines the app
  // upstream's catch-all, which is then decided by path, by the catch-all's rule and the file's only.
  const fileRules = config.accessRulesFile === undefined ? [] : loadAccessRules(config.accessRulesFile, DEFAULT_RULES)
  const byPath = new Map(fileRules.length === 0 ? [] : [[APP_ROUTE, [...DEFAULT_RULES.filter((rule) => rule.path === APP_ROUTE), ...fileRules]]])
  const app = Fastify({
    logger: options.logger ?? false,
    // Fastify trusts no hop for a bare number, so a hop count is given as proxy-addr's (address, hop) test.
    trustProxy: typeof config.trustProxy === 'number' ? ((hops: number) => (_address: string, hop: number) => hop < hops)(config.trustProxy) : config.trustProxy === false ? false : [...config.trustProxy],
    bodyLimit: 16 * 1024,
    // A client's request must arrive in time (slow headers, a body that never comes: 408, then closed).
    requestTimeout: config.requestTimeout,
    http: { requestTimeout: config.requestTimeout, headersTimeout: config.headersTimeout, connectionsCheckingInterval: connectionsCheckingInterval(config) },
    rewriteUrl,
    // Answered before routing (so before the CORS and hygiene hooks): the headers are added here.
    frameworkErrors: frameworkErrorHandler(earlyErrorHeaders(securityHeaders(config.publicUrl), config.allowedOrigins)),
    clientErrorHandler: clientErrorHandler(securityHeaders(config.publicUrl)),
    // X-Request-Id from a trusted proxy, else a new one: returned, logged, passed on.
    genReqId: requestIdGenerator(trustedPeer(config.trustProxy)),
    ...SERVE_WHILE_DRAINING
  })
  // First, so that every hook and route registered after it gets its span.
  if (options.tracing !== undefined) await app.register(options.tracing.plugin('gateway'))
  // The gateway's migrations; better-auth's tables are auth-core's to check (its `/ready`).
  const schema = new SchemaWatch(options.pool, expectedSchema())
  useErrorFormat(app, GATEWAY_ERRORS, { schema })
  app.server.maxConnections = config.maxConnections
  // A bodyless request that still says `Content-Type: application/json` (what many fetch wrappers send, e.g. on DELETE) has no body, rather than a 400.
  const parseJson = app.getDefaultJsonParser('error', 'error')
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => { if (body.length === 0) done(null, undefined); else parseJson(request, body.toString(), done) })

  await app.register(drainPlugin)
  // Counters of the stages and routes (null without METRICS_PORT), and every answered request.
  app.decorate('metrics', options.metrics === undefined ? null : new GatewayMetrics(options.metrics.registry))
  if (options.metrics !== undefined) await app.register(requestMetrics, { metrics: options.metrics, service: 'gateway' })
  await app.register(pgPlugin, { pool: options.pool, schema })
  await app.register(upstreamsPlugin, { authCoreUrl: config.authCoreUrl, ragUpstreamUrl: config.ragUpstreamUrl, appUpstreamUrl: config.appUpstreamUrl, timeoutMs: options.upstreamTimeoutMs ?? config.upstreamTimeout })
  await app.register(identityPlugin, { jwtSecret: config.jwtSecret, jwtAlg: config.jwtAlg, sessionCacheTtl: config.sessionCacheTtl, userFields: config.userFields, redisUrl: config.redisUrl })
  // The file's rules decide only on the route they refine (byPath); every route's own rule is built in.
  await registerPipeline(app, config, DEFAULT_RULES, byPath)

  // API_DOCS: before the routes, which it collects; without it neither document route exists (404).
  if (config.apiDocs) await app.register(apiDocsPlugin)
  await app.register(healthRoutes, { publicUrl: config.publicUrl })
  await app.register(authProxy, { authCoreUrl: config.authCoreUrl, publicUrl: config.publicUrl, allowedOrigins: config.allowedOrigins })
  await app.register(profileRoutes, { consentVersion: config.consentVersion, allowedOrigins: config.allowedOrigins, publicUrl: config.publicUrl, claimsCacheTtl: config.sessionCacheTtl })
  await app.register(sessionEvents)
  await app.register(tokenRoutes)
  await app.register(tokenLoginRoutes, { publicUrl: config.publicUrl, allowedOrigins: config.allowedOrigins, userFields: config.userFields })
  await app.register(validateSessionRoutes)
  await app.register(userProfileRoutes, { publicUrl: config.publicUrl })
  await app.register(adminAuditRoutes, { require2fa: config.adminRequire2fa })
  await app.register(sessionsRoutes, { publicUrl: config.publicUrl, allowedOrigins: config.allowedOrigins })
  if (config.apiDocs) await app.register(apiDocsRoutes, { publicUrl: config.publicUrl, rules: DEFAULT_RULES })
  const limits = upstreamLimits(config, options)
  await app.register(ragRoutes, { tokens: config.upstreamTokens.rag, jwtSecret: config.jwtSecret, publicUrl: config.publicUrl, limits })
  await app.register(appUpstreamRoutes, { tokens: config.upstreamTokens.app, jwtSecret: config.jwtSecret, publicUrl: config.publicUrl, writeOrigins: writeOrigins(config.allowedOrigins, config.publicUrl), limits })
  return app
}
