import createError from '@fastify/error'
import type { FastifyError } from 'fastify'

/*
 * Every error code the gateway itself returns. The body's `error` is the code lower-cased
 * (`AUTH_CORE_UNAVAILABLE` → `"auth_core_unavailable"`); the README lists them all.
 */
export const AuthCoreUnavailableError = createError('AUTH_CORE_UNAVAILABLE', 'The authentication service is unavailable, try again shortly', 503)
export const UpstreamUnavailableError = createError('UPSTREAM_UNAVAILABLE', 'The %s service is unavailable, try again shortly', 503)
export const UpstreamTimeoutError = createError('UPSTREAM_TIMEOUT', 'The %s service did not answer in time', 504)
export const BadGatewayError = createError('BAD_GATEWAY', 'The %s service answered with an invalid response', 502)
export const RagUpstreamNotConfiguredError = createError('RAG_UPSTREAM_NOT_CONFIGURED', 'The RAG service is not configured on this gateway (RAG_UPSTREAM_URL)', 503)
export const UnauthorizedError = createError('UNAUTHORIZED', 'Sign in to use this endpoint', 401)
export const InvalidTokenError = createError('INVALID_TOKEN', 'The bearer token is invalid or expired', 401)
export const ForbiddenError = createError('FORBIDDEN', 'You do not have access to this endpoint', 403)
export const CsrfRejectedError = createError('CSRF_REJECTED', 'Cross-site request refused: the request must come from an allowed origin', 403)
export const BadPathError = createError('BAD_PATH', 'The request path is not allowed: %s', 400)
export const DuplicateHostError = createError('BAD_REQUEST', 'The request carries more than one Host header', 400)
export const ConsentRequiredError = createError('CONSENT_REQUIRED', 'Consent must be given to store background information', 400)
export const RateLimitedError = createError('RATE_LIMITED', 'Too many requests, retry in %s seconds', 429)
export const MethodNotAllowedError = createError('METHOD_NOT_ALLOWED', 'Method %s is not allowed on this route', 405)

const CONNECT_FAILURES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'FST_REPLY_FROM_SERVICE_UNAVAILABLE'
])
const TIMEOUTS = new Set([
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'FST_REPLY_FROM_TIMEOUT',
  'FST_REPLY_FROM_GATEWAY_TIMEOUT',
  'FST_REPLY_FROM_HTTP_REQUEST_TIMEOUT'
])

function codeOf (err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : undefined
}

/**
 * An upstream failure as a 502/503/504 keyed on undici's `err.code` (reply-from wraps it, so the
 * cause is looked at too). The original error stays in `cause` for the log only.
 */
export function upstreamError (err: unknown, upstream: string): FastifyError {
  const codes = [codeOf(err), codeOf((err as { cause?: unknown } | null)?.cause)]
  if (codes.some((code) => code !== undefined && TIMEOUTS.has(code))) return new UpstreamTimeoutError(upstream, { cause: err })
  if (codes.some((code) => code !== undefined && CONNECT_FAILURES.has(code))) {
    return upstream === 'auth' ? new AuthCoreUnavailableError({ cause: err }) : new UpstreamUnavailableError(upstream, { cause: err })
  }
  return new BadGatewayError(upstream, { cause: err })
}
