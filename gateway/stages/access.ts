import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest, RouteOptions } from 'fastify'
import { annotate, inSpan } from '../../shared/spans.ts'
import { coverageProblems, decideByRule } from '../access/is-endpoint-accessible.ts'
import type { RouteSummary } from '../access/is-endpoint-accessible.ts'
import type { AccessRule } from '../access/rules.ts'
import { ForbiddenError, UnauthorizedError } from '../errors.ts'

export interface AccessStageOptions {
  rules: readonly AccessRule[]
}

function routeMethods (route: RouteOptions): string[] {
  return Array.isArray(route.method) ? route.method : [route.method]
}

/**
 * The access stage: authorises the caller the identity stage found, by the rule the identity stage
 * matched on the route (after normalisation; on a route refined by path, its normalised path) and the
 * method, never the raw URL; default deny. Also proves at startup that each
 * registered route matches exactly one rule.
 */
async function accessStage (app: FastifyInstance, options: AccessStageOptions): Promise<void> {
  const routes: RouteSummary[] = []
  app.addHook('onRoute', (route) => {
    for (const method of routeMethods(route)) routes.push({ method, url: route.url })
  })
  app.addHook('onReady', async () => {
    const problems = coverageProblems(options.rules, routes)
    if (problems.length > 0) throw new Error(`access policy does not cover the gateway: ${problems.join('; ')}`)
  })

  const refuse = (status: 401 | 403): Error => {
    app.metrics?.policyRefusals.inc({ status })
    return status === 401 ? new UnauthorizedError() : new ForbiddenError()
  }

  /** Why the request is refused, or undefined when its caller may go on. */
  const refusal = (request: FastifyRequest, rule: AccessRule | null): Error | undefined => {
    if (rule === null) return refuse(403)
    annotate({ 'auth_gateway.access.rule': rule.path, 'auth_gateway.access': rule.access })
    const failure = request.identityFailure
    if (failure !== null) {
      // A bad token is refused (401); auth-core or Postgres away is not a refusal (503).
      if (failure.statusCode === 401) app.metrics?.policyRefusals.inc({ status: 401 })
      return failure
    }
    // The rule the identity stage found decides: on a route refined by path, only its own rules may.
    const decision = decideByRule(rule, request.identity?.user ?? null)
    annotate({ 'auth_gateway.access.allowed': decision.allowed })
    return decision.allowed ? undefined : refuse(decision.status === 401 ? 401 : 403)
  }

  app.addHook('onRequest', function authorise (request, _reply, done) {
    const facts = request.policyFacts
    if (facts === null || facts.anonymous.allowed) return done()
    // A span of its own when traced: the policy decision.
    done(inSpan('authorise', { 'http.route': facts.route }, () => refusal(request, facts.anonymous.rule)))
  })
}

export default fp(accessStage, { name: 'access', dependencies: ['identity-stage'] })
