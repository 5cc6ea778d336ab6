import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest, RouteOptions } from 'fastify'
import { coverageProblems, isEndpointAccessible } from '../access/is-endpoint-accessible.ts'
import type { Decision, RouteSummary } from '../access/is-endpoint-accessible.ts'
import type { AccessRule } from '../access/rules.ts'
import type { Resolution } from '../plugins/identity.ts'
import { ForbiddenError, UnauthorizedError } from '../errors.ts'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** `'optional'`: a public route that still wants to know a signed-in caller (RAG, validate-session). */
    identity?: 'optional'
  }
}

export interface AccessPluginOptions {
  rules: readonly AccessRule[]
}

function routeMethods (route: RouteOptions): string[] {
  return Array.isArray(route.method) ? route.method : [route.method]
}

/**
 * Enforces the access policy on every request, before anything else runs for it: the decision uses
 * the route that matched (after normalisation) and the method, never the raw URL. Also proves at
 * startup that each registered route matches exactly one rule.
 */
async function accessPlugin (app: FastifyInstance, options: AccessPluginOptions): Promise<void> {
  const routes: RouteSummary[] = []
  app.addHook('onRoute', (route) => {
    for (const method of routeMethods(route)) routes.push({ method, url: route.url })
  })
  app.addHook('onReady', async () => {
    const problems = coverageProblems(options.rules, routes)
    if (problems.length > 0) throw new Error(`access policy does not cover the gateway: ${problems.join('; ')}`)
  })

  // The anonymous decision depends only on the route and method: computed once per pair.
  const anonymousDecisions = new Map<string, Decision>()
  const decideAnonymous = (method: string, route: string): Decision => {
    const key = `${method} ${route}`
    let decision = anonymousDecisions.get(key)
    if (decision === undefined) {
      decision = isEndpointAccessible(options.rules, { method, path: route, identity: null })
      anonymousDecisions.set(key, decision)
    }
    return decision
  }

  /** What the policy says once the caller is known; null when the request may go on. */
  const decide = (request: FastifyRequest, route: string, allowedAnonymously: boolean, resolution: Resolution): Error | null => {
    request.identity = resolution.identity
    if (allowedAnonymously) return null
    if (resolution.error !== null) return resolution.error
    const decision = isEndpointAccessible(options.rules, { method: request.method, path: route, identity: resolution.identity?.user ?? null })
    if (decision.allowed) return null
    return decision.status === 401 ? new UnauthorizedError() : new ForbiddenError()
  }

  // A callback hook: a caller known without I/O (anonymous, a cached session or token) is decided
  // without a promise; only a look-up at auth-core or Postgres waits.
  app.addHook('onRequest', (request, _reply, done) => {
    // Unmatched requests go on to the 404 handler.
    if (request.is404) return done()
    // Fastify builds `routeOptions` on every read: read once.
    const { url: route, config } = request.routeOptions
    if (route === undefined) return done()
    const anonymous = decideAnonymous(request.method, route)
    if (anonymous.allowed && config.identity !== 'optional') return done()
    if (!anonymous.allowed && anonymous.reason === 'no_rule') return done(new ForbiddenError())

    const finish = (resolution: Resolution): void => {
      const refusal = decide(request, route, anonymous.allowed, resolution)
      if (refusal === null) done()
      else done(refusal)
    }
    const known = app.identities.resolveNow(request)
    if (known !== undefined) finish(known)
    else app.identities.resolve(request).then(finish, done)
  })
}

export default fp(accessPlugin, { name: 'access', dependencies: ['identity'] })
