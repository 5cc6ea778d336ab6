import type { FastifyRequest } from 'fastify'
import type { Identity } from '../identity/identity-resolver.ts'

/** The origin of a URL-valued header, or null when it is not a URL. */
export function originOf (value: string): string | null {
  try {
    const origin = new URL(value).origin
    return origin === 'null' ? null : origin
  } catch {
    return null
  }
}

/**
 * CSRF policy for cookie-authenticated writes: the `Origin` header must be allowed; without one, a
 * `Referer` from an allowed origin is accepted. Bearer and API-key calls carry no ambient credentials, so they pass.
 */
export function isSameSiteWrite (request: Pick<FastifyRequest, 'headers'>, identity: Pick<Identity, 'via'>, allowed: ReadonlySet<string>): boolean {
  if (identity.via !== 'cookie') return true
  const { origin, referer } = request.headers
  if (origin !== undefined) return allowed.has(origin)
  if (referer === undefined) return false
  const refererOrigin = originOf(referer)
  return refererOrigin !== null && allowed.has(refererOrigin)
}

/** The origins cookie-authenticated writes may come from: `ALLOWED_ORIGINS` and the gateway's own. */
export function writeOrigins (allowedOrigins: readonly string[], publicUrl: string): Set<string> {
  const publicOrigin = originOf(publicUrl)
  if (publicOrigin === null) throw new Error(`publicUrl must be a URL, got ${JSON.stringify(publicUrl)}`)
  return new Set([...allowedOrigins, publicOrigin])
}
