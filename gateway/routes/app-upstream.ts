import type { FastifyInstance } from 'fastify'
import type { UpstreamName, UpstreamTokenConfig } from '../../shared/config.ts'
import { publicFacts } from '../client-address.ts'
import { CsrfRejectedError } from '../errors.ts'
import { isSameSiteWrite } from '../guards/csrf.ts'
import { IdentityTokens, pseudonymousSubjects } from '../identity/identity-tokens.ts'
import { bufferBodies, forward } from '../proxy/forward.ts'
import { DEFAULT_UPSTREAM_LIMITS, UpstreamClient } from '../proxy/upstream-client.ts'
import type { UpstreamLimits } from '../proxy/upstream-client.ts'
import { APP_ROUTE } from '../route-paths.ts'

const APP_BODY_LIMIT = 1024 * 1024
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS'])
const NAME: UpstreamName = 'app'

export interface AppUpstreamRoutesOptions {
  /** How the app upstream's identity tokens are signed and whom they name. */
  tokens: UpstreamTokenConfig
  /** `JWT_SECRET`: the pseudonymous subjects are keyed with a key derived from it. */
  jwtSecret: string
  /** `PUBLIC_URL`: its host and protocol are the `X-Forwarded-Host`/`-Proto` upstreams receive. */
  publicUrl: string
  /** Origins cookie-authenticated writes may come from (ALLOWED_ORIGINS + PUBLIC_URL). */
  writeOrigins: ReadonlySet<string>
  /** Deadline, idle timeout and buffering cap of the calls (`UPSTREAM_TIMEOUT`, …). */
  limits?: Readonly<UpstreamLimits>
}

/**
 * Every other `/api/*` → the app upstream (a session, unless `ACCESS_RULES_FILE` says otherwise). Without an app
 * upstream there is no such route at all: those paths answer 404.
 */
export default async function appUpstreamRoutes (app: FastifyInstance, options: AppUpstreamRoutesOptions): Promise<void> {
  const pool = app.upstreamPools.app
  if (pool === undefined) return
  const upstream = new UpstreamClient(pool, options.limits ?? DEFAULT_UPSTREAM_LIMITS)
  const tokens = new IdentityTokens(app, NAME, options.tokens, pseudonymousSubjects(options.jwtSecret))
  const origin = publicFacts(options.publicUrl)
  bufferBodies(app, '*', false)
  app.route({
    method: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'],
    url: APP_ROUTE,
    bodyLimit: APP_BODY_LIMIT,
    // A cookie rides along on a cross-site form post: state changes need an allowed origin.
    preValidation: async (request) => {
      if (SAFE_METHODS.has(request.method) || request.identity === null) return
      if (!isSameSiteWrite(request, request.identity, options.writeOrigins)) throw new CsrfRejectedError()
    },
    handler: async (request, reply) => forward(tokens, upstream, NAME, origin, request, reply)
  })
}
