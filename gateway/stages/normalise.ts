import type { FastifyRequest } from 'fastify'
import type { IncomingMessage } from 'node:http'
import { normalisePath } from './normalise-path.ts'
import { AUTH_ALIASES, TOKEN_SIGNUP_ROUTE } from '../route-paths.ts'

/*
 * The normalise stage, first of all: Fastify's `rewriteUrl` server option, so it runs before routing.
 * Every later stage, the policy and the upstream see the one normalised path.
 */

/**
 * The target of an alias, or the path unchanged. Only the alias's own method is mapped. A sign-up
 * without `Origin` is a token client's (every browser sends `Origin` on a POST): it stays on the
 * gateway's token route.
 */
export function resolveAuthAlias (method: string, path: string, hasOrigin = true): string {
  if (!hasOrigin && method === 'POST' && path === TOKEN_SIGNUP_ROUTE) return path
  const alias = AUTH_ALIASES[path]
  return alias !== undefined && (alias.method === method || (alias.method === 'GET' && method === 'HEAD')) ? alias.target : path
}

const kBadPath = Symbol('auth-gateway.badPath')
type MarkedRequest = IncomingMessage & { [kBadPath]?: string }

/**
 * Fastify's `rewriteUrl`: the one place a target is normalised (and aliases resolved), before
 * routing. A target that cannot be normalised safely is marked and refused with 400 by the hygiene stage.
 */
export function rewriteUrl (req: IncomingMessage): string {
  const normalised = normalisePath(req.url ?? '/')
  if (!normalised.ok) {
    (req as MarkedRequest)[kBadPath] = normalised.reason
    return '/'
  }
  return resolveAuthAlias(req.method ?? 'GET', normalised.path, req.headers.origin !== undefined) + normalised.query
}

/** The path a request was routed on: `rewriteUrl` already normalised it and resolved aliases. */
export function routedPath (request: Pick<FastifyRequest, 'url'>): string {
  const query = request.url.indexOf('?')
  return query === -1 ? request.url : request.url.slice(0, query)
}

/** Why `rewriteUrl` could not normalise the request's target, or undefined when it could. */
export function badPathOf (request: Pick<FastifyRequest, 'raw'>): string | undefined {
  return (request.raw as MarkedRequest)[kBadPath]
}
