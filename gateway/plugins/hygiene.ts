import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { IncomingMessage } from 'node:http'
import { normalisePath } from '../access/normalise-path.ts'
import { BadPathError, DuplicateHostError } from '../errors.ts'
import { resolveAuthAlias } from '../routes/auth-proxy.ts'

const kBadPath = Symbol('auth-gateway.badPath')
type MarkedRequest = IncomingMessage & { [kBadPath]?: string }

/**
 * Fastify's `rewriteUrl`: the one place a target is normalised (and aliases resolved), before
 * routing. A target that cannot be normalised safely is marked and refused with 400 by the hook below.
 */
export function rewriteUrl (req: IncomingMessage): string {
  const normalised = normalisePath(req.url ?? '/')
  if (!normalised.ok) {
    (req as MarkedRequest)[kBadPath] = normalised.reason
    return '/'
  }
  return resolveAuthAlias(req.method ?? 'GET', normalised.path) + normalised.query
}

/** The path a request was routed on: `rewriteUrl` already normalised it and resolved aliases. */
export function routedPath (request: Pick<FastifyRequest, 'url'>): string {
  const query = request.url.indexOf('?')
  return query === -1 ? request.url : request.url.slice(0, query)
}

export interface HygienePluginOptions {
  publicUrl: string
}

function countHost (rawHeaders: string[]): number {
  let hosts = 0
  for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i].length === 4 && rawHeaders[i].toLowerCase() === 'host') hosts++
  return hosts
}

/**
 * The security headers of a JSON API, the same on every answer (what `@fastify/helmet` would set for
 * it, computed once instead of through a middleware chain on every request).
 */
export function securityHeaders (publicUrl: string): Readonly<Record<string, string>> {
  return Object.freeze({
    'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'referrer-policy': 'no-referrer',
    'x-permitted-cross-domain-policies': 'none',
    'x-dns-prefetch-control': 'off',
    ...(publicUrl.startsWith('https:') ? { 'strict-transport-security': 'max-age=31536000; includeSubDomains' } : {})
  })
}

/** Security headers on every answer; refusal of unsafe targets and of requests with two `Host`s. */
async function hygienePlugin (app: FastifyInstance, options: HygienePluginOptions): Promise<void> {
  const headers = securityHeaders(options.publicUrl)
  app.addHook('onRequest', (request, reply, done) => {
    reply.headers(headers)
    const reason = (request.raw as MarkedRequest)[kBadPath]
    if (reason !== undefined) done(new BadPathError(reason))
    else if (countHost(request.raw.rawHeaders) > 1) done(new DuplicateHostError())
    else done()
  })
}

export default fp(hygienePlugin, { name: 'hygiene' })
