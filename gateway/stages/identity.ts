import fp from 'fastify-plugin'
import { inSpan } from '../../shared/spans.ts'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { anonymousDecisions, isEndpointAccessible } from '../access/is-endpoint-accessible.ts'
import type { Decision } from '../access/is-endpoint-accessible.ts'
import type { AccessRule } from '../access/rules.ts'
import type { Resolution } from '../identity/identity-resolver.ts'
import { apiKeyOpens } from '../access/api-key-scopes.ts'
import { ApiKeyOutOfScopeError, InvalidApiKeyError } from '../errors.ts'
import { routedPath } from './normalise.ts'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** `'optional'`: a public route that still wants to know a signed-in caller (RAG, validate-session). */
    identity?: 'optional'
  }
  interface FastifyRequest {
    /** The route pattern (or, on a route refined by path, the path matched) and the policy's verdict for an anonymous caller, with the rule that decided it, read once by the identity stage for the access stage. */
    policyFacts: { route: string, anonymous: Decision } | null
  }
}

export interface IdentityStageOptions {
  rules: readonly AccessRule[]
  /**
   * Routes decided by the request's (normalised) path rather than their pattern, each with the rules
   * that decide it: the app upstream's catch-all and the rules of `ACCESS_RULES_FILE`. @default none
   */
  byPath?: ReadonlyMap<string, readonly AccessRule[]>
}

/**
 * What a route refined by path is matched on: the normalised path (`rewriteUrl` made it the one the
 * upstream receives) without its query, in lower case and without a final slash, since an upstream
 * may well route `/api/Reports/1/` as `/api/reports/1`. `:` and `*` are kept from reading as a
 * pattern's parameter or rest (a literal `/api/reports/*` must not equal the rule `/api/reports/*`).
 */
function refinedPathOf (request: FastifyRequest): string {
  let path = routedPath(request).toLowerCase().replaceAll(':', '%3a').replaceAll('*', '%2a')
  if (path.length > 1 && path.endsWith('/')) path = path.slice(0, -1)
  return path
}

/**
 * The identity stage: who the caller is (cookie session or API key through auth-core, bearer token locally),
 * kept on `request.identity` for every later hook and the handler; a failure to find out is kept on
 * `request.identityFailure` for the access stage to judge. Routes that are public and do not ask for
 * the caller skip it. A caller known without I/O (anonymous, a cached session or token) is decided
 * without a promise; only a look-up at auth-core or Postgres waits.
 */
async function identityStage (app: FastifyInstance, options: IdentityStageOptions): Promise<void> {
  const decideAnonymous = anonymousDecisions(options.rules)
  const byPath = options.byPath ?? new Map<string, readonly AccessRule[]>()
  app.decorateRequest('policyFacts', null)

  /**
   * Keeps the caller; answers why the request stops here, if it does. An API key is refused where it
   * does not open the route, and when it opens nothing, on public routes too: a script that sent a
   * key means to be someone, and going on anonymously would hide a deleted or mistyped key.
   */
  const keep = (request: FastifyRequest, pattern: string, resolution: Resolution): Error | undefined => {
    request.identity = resolution.identity
    request.identityFailure = resolution.error
    if (resolution.error instanceof InvalidApiKeyError) {
      app.metrics?.policyRefusals.inc({ status: 401 })
      return resolution.error
    }
    const key = resolution.identity?.apiKey
    if (key === undefined || apiKeyOpens(key.scope, pattern)) return undefined
    app.metrics?.policyRefusals.inc({ status: 403 })
    return new ApiKeyOutOfScopeError(key.scope)
  }

  app.addHook('onRequest', function identify (request, _reply, done) {
    // Unmatched requests go on to the 404 handler.
    if (request.is404) return done()
    // Fastify builds `routeOptions` on every read: read once.
    const { url: pattern, config } = request.routeOptions
    if (pattern === undefined) return done()
    // A route refined by path is decided by the path (never memoised: paths are the client's to vary),
    // and a public path on it still learns a signed-in caller, like the RAG routes.
    const refinedBy = byPath.get(pattern)
    const route = refinedBy === undefined ? pattern : refinedPathOf(request)
    const anonymous = refinedBy === undefined ? decideAnonymous(request.method, route) : isEndpointAccessible(refinedBy, { method: request.method, path: route, identity: null })
    request.policyFacts = { route, anonymous }
    const optional = refinedBy !== undefined || config.identity === 'optional'
    if ((anonymous.allowed && !optional) || (!anonymous.allowed && anonymous.reason === 'no_rule')) return done()
    const known = app.identities.resolveNow(request)
    if (known !== undefined) {
      done(keep(request, pattern, known))
      return
    }
    // A span of its own when traced: the look-up in auth-core (or of a token's user) under it.
    inSpan('identify', { 'http.route': route }, () => app.identities.resolve(request)).then((resolution) => {
      done(keep(request, pattern, resolution))
    }, done)
  })
}

export default fp(identityStage, { name: 'identity-stage', dependencies: ['identity'] })
