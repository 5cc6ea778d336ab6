import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { anonymousDecisions, isEndpointAccessible } from '../access/is-endpoint-accessible.ts'
import type { Decision } from '../access/is-endpoint-accessible.ts'
import type { AccessRule } from '../access/rules.ts'
import type { Resolution } from '../identity/identity-resolver.ts'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** `'optional'`: a public route that still wants to know a signed-in caller (RAG, validate-session). */
    identity?: 'optional'
  }
  interface FastifyRequest {
    /** The route pattern and the policy's verdict for an anonymous caller, read once by the identity stage for the access stage. */
    policyFacts: { route: string, anonymous: Decision } | null
  }
}

export interface IdentityStageOptions {
  rules: readonly AccessRule[]
  /**
   * Routes decided by the request's (normalised) path rather than their pattern: the app upstream's
   * catch-all when `ACCESS_RULES_FILE` refines it. @default none
   */
  byPath?: ReadonlySet<string>
}

/** The path of a normalised target, without its query. */
function pathOf (url: string): string {
  const query = url.indexOf('?')
  return query === -1 ? url : url.slice(0, query)
}

/**
 * The identity stage: who the caller is (cookie session through auth-core, bearer token locally),
 * kept on `request.identity` for every later hook and the handler; a failure to find out is kept on
 * `request.identityFailure` for the access stage to judge. Routes that are public and do not ask for
 * the caller skip it. A caller known without I/O (anonymous, a cached session or token) is decided
 * without a promise; only a look-up at auth-core or Postgres waits.
 */
async function identityStage (app: FastifyInstance, options: IdentityStageOptions): Promise<void> {
  const decideAnonymous = anonymousDecisions(options.rules)
  const byPath = options.byPath ?? new Set<string>()
  app.decorateRequest('policyFacts', null)

  const keep = (request: FastifyRequest, resolution: Resolution): void => {
    request.identity = resolution.identity
    request.identityFailure = resolution.error
  }

  app.addHook('onRequest', function identify (request, _reply, done) {
    // Unmatched requests go on to the 404 handler.
    if (request.is404) return done()
    // Fastify builds `routeOptions` on every read: read once.
    const { url: pattern, config } = request.routeOptions
    if (pattern === undefined) return done()
    // A route refined by path is decided by the path (never memoised: paths are the client's to vary),
    // and a public path on it still learns a signed-in caller, like the RAG routes.
    const refined = byPath.has(pattern)
    const route = refined ? pathOf(request.url) : pattern
    const anonymous = refined ? isEndpointAccessible(options.rules, { method: request.method, path: route, identity: null }) : decideAnonymous(request.method, route)
    request.policyFacts = { route, anonymous }
    const optional = refined || config.identity === 'optional'
    if ((anonymous.allowed && !optional) || (!anonymous.allowed && anonymous.reason === 'no_rule')) return done()
    const known = app.identities.resolveNow(request)
    if (known !== undefined) {
      keep(request, known)
      done()
      return
    }
    app.identities.resolve(request).then((resolution) => {
      keep(request, resolution)
      done()
    }, done)
  })
}

export default fp(identityStage, { name: 'identity-stage', dependencies: ['identity'] })
