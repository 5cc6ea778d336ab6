import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { badPathOf } from './normalise.ts'
import { BadPathError, DuplicateHostError, HeaderTooLargeError } from '../errors.ts'

export interface HygienePluginOptions {
  publicUrl: string
}

/** The most `Cookie` bytes (all such headers together) a request may carry: sessions need a few hundred. */
export const MAX_COOKIE_BYTES = 8 * 1024
/** The most `Authorization` bytes a request may carry: a gateway token needs well under 1 KiB. */
export const MAX_AUTHORIZATION_BYTES = 4 * 1024

/**
 * Two `Host`s, or a `Cookie` or `Authorization` too large to be genuine, refused before the session
 * cache, auth-core or the token check ever see them. One pass over the raw headers.
 */
function headerError (rawHeaders: string[]): Error | null {
  let hosts = 0
  let cookieBytes = 0
  let authorizationBytes = 0
  // Node decodes header values as latin1, so a value's length is its size on the wire.
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]
    if (name.length === 4 && name.toLowerCase() === 'host') hosts++
    else if (name.length === 6 && name.toLowerCase() === 'cookie') cookieBytes += rawHeaders[i + 1].length
    else if (name.length === 13 && name.toLowerCase() === 'authorization') authorizationBytes += rawHeaders[i + 1].length
  }
  if (hosts > 1) return new DuplicateHostError()
  if (cookieBytes > MAX_COOKIE_BYTES) return new HeaderTooLargeError('Cookie', MAX_COOKIE_BYTES)
  if (authorizationBytes > MAX_AUTHORIZATION_BYTES) return new HeaderTooLargeError('Authorization', MAX_AUTHORIZATION_BYTES)
  return null
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

/**
 * Security headers on every answer; refusal of unsafe targets, of requests with two `Host`s and of
 * oversized credentials (431).
 */
async function hygienePlugin (app: FastifyInstance, options: HygienePluginOptions): Promise<void> {
  const headers = securityHeaders(options.publicUrl)
  app.addHook('onRequest', function hygiene (request, reply, done) {
    reply.headers(headers)
    const reason = badPathOf(request)
    if (reason !== undefined) {
      done(new BadPathError(reason))
      return
    }
    const refusal = headerError(request.raw.rawHeaders)
    if (refusal === null) done()
    else done(refusal)
  })
}

export default fp(hygienePlugin, { name: 'hygiene' })
