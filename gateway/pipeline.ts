import type { FastifyInstance } from 'fastify'
import type { GatewayConfig } from '../shared/config.ts'
import type { AccessRule } from './access/rules.ts'
import requestIdStage from '../shared/request-id.ts'
import accessStage from './stages/access.ts'
import corsStage from './stages/cors.ts'
import hygieneStage from './stages/hygiene.ts'
import identityStage from './stages/identity.ts'
import rateLimitStage from './stages/rate-limit.ts'

/*
 * The request's stages, in the order they run (each one named hook; `printRoutes({ includeHooks: true })`
 * lists them so):
 *
 *   normalise   `rewriteUrl` (stages/normalise.ts), a server option: before routing, one canonical path
 *   requestId   the request's id (`genReqId`, shared/request-id.ts) on every answer, `X-Request-Id`
 *   cors        preflights answered, CORS headers on every answer to an allowed origin, refusals included
 *   hygiene     security headers; refuses unsafe targets, two `Host`s, oversized `Cookie`/`Authorization`
 *   rateLimit   per-address budgets (every route; the sign-in group)
 *   identify    the caller, kept on `request.identity` for every later hook and the handler
 *   authorise   the access policy: default deny, by route and method
 *   callerBudget (preValidation) an API key's own budget on every route; else the RAG budget, per user
 *               when signed in, per address when not
 *   route       the handler
 *
 * CORS runs before hygiene so that a hygiene refusal sent to an allowed origin is still readable by the page.
 */
export async function registerPipeline (app: FastifyInstance, config: Readonly<GatewayConfig>, rules: readonly AccessRule[], byPath: ReadonlyMap<string, readonly AccessRule[]> = new Map()): Promise<void> {
  await app.register(requestIdStage)
  await app.register(corsStage, { allowedOrigins: config.allowedOrigins })
  await app.register(hygieneStage, { publicUrl: config.publicUrl })
  await app.register(rateLimitStage, {
    authMax: config.authRateLimitMax,
    authWindow: config.authRateLimitWindow,
    max: config.rateLimitMax,
    window: config.rateLimitWindow,
    ragAnon: config.ragRateLimitAnon,
    ragUser: config.ragRateLimitUser,
    apiKey: config.apiKeyRateLimit,
    redisUrl: config.redisUrl
  })
  await app.register(identityStage, { rules, byPath })
  await app.register(accessStage, { rules })
}
