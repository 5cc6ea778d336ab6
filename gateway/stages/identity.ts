import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { anonymousDecisions } from '../access/is-endpoint-accessible.ts'
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
  app.decorateRequest('policyFacts', null)

  const keep = (request: FastifyRequest, resolution: Resolution): void => {
    request.identity = resolution.identity
    request.identityFailure = resolution.error
  }

  app.addHook('onRequest', function identify (request, _reply, done) {
    // Unmatched requests go on to the 404 handler.
    if (request.is404) return done()
    // Fastify builds `routeOptions` on every read: read once.
    const { url: route, config } = request.routeOptions
    if (route === undefined) return done()
    const anonymous = decideAnonymous(request.method, route)
    request.policyFacts = { route, anonymous }
    if ((anonymous.allowed && config.identity !== 'optional') || (!anonymous.allowed && anonymous.reason === 'no_rule')) return done()
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
