import createError from '@fastify/error'
import type { FastifyError, FastifyRequest } from 'fastify'
import { DatabaseUnavailableError, errorRegistry, InternalError } from '../shared/errors.ts'
import type { EarlyHeaders } from '../shared/errors.ts'

/*
 * Every error code the gateway itself returns, each also listed in `GATEWAY_ERRORS` below (the error
 * handler sends a 5xx's message only for those; `docs/errors.md` is generated from it). The body's
 * `error` is the code lower-cased (`AUTH_CORE_UNAVAILABLE` → `"auth_core_unavailable"`).
 */
export const AuthCoreUnavailableError = createError('AUTH_CORE_UNAVAILABLE', 'The authentication service is unavailable, try again shortly', 503)
export const UpstreamUnavailableError = createError('UPSTREAM_UNAVAILABLE', 'The %s service is unavailable, try again shortly', 503)
export const UpstreamTimeoutError = createError('UPSTREAM_TIMEOUT', 'The %s service did not answer in time', 504)
export const BadGatewayError = createError('BAD_GATEWAY', 'The %s service answered with an invalid response', 502)
export const RagUpstreamNotConfiguredError = createError('RAG_UPSTREAM_NOT_CONFIGURED', 'The RAG service is not configured on this gateway (RAG_UPSTREAM_URL)', 503)
export const UnauthorizedError = createError('UNAUTHORIZED', 'Sign in to use this endpoint', 401)
export const InvalidTokenError = createError('INVALID_TOKEN', 'The bearer token is invalid or expired', 401)
export const InvalidRefreshTokenError = createError('INVALID_REFRESH_TOKEN', 'The refresh token is invalid, expired or revoked: log in again', 401)
export const TwoFactorCodeRequiredError = createError('TWO_FACTOR_CODE_REQUIRED', 'This account signs in with a second factor: send the authenticator app\'s code as `code`', 401)
export const LoginTokenRequiredError = createError('LOGIN_TOKEN_REQUIRED', 'Only a token from /auth/login can be logged out alone; sign out everywhere (POST /auth/revoke-sessions) ends every token', 400)
export const InvalidApiKeyError = createError('INVALID_API_KEY', 'The API key is invalid, expired or revoked', 401)
export const ApiKeyOutOfScopeError = createError('API_KEY_OUT_OF_SCOPE', 'This API key does not open this endpoint (its scope is "%s")', 403)
export const ForbiddenError = createError('FORBIDDEN', 'You do not have access to this endpoint', 403)
export const SessionCookieRequiredError = createError('SESSION_COOKIE_REQUIRED', 'Sessions are managed with the session cookie, not a bearer token', 400)
export const TwoFactorRequiredError = createError('TWO_FACTOR_REQUIRED', 'Turn on two-factor sign-in to use the admin routes (ADMIN_REQUIRE_2FA)', 403)
export const CsrfRejectedError = createError('CSRF_REJECTED', 'Cross-site request refused: the request must come from an allowed origin', 403)
export const BadPathError = createError('BAD_PATH', 'The request path is not allowed: %s', 400)
export const DuplicateHostError = createError('BAD_REQUEST', 'The request carries more than one Host header', 400)
export const ConsentRequiredError = createError('CONSENT_REQUIRED', 'Consent must be given to store background information', 400)
export const RateLimitedError = createError('RATE_LIMITED', 'Too many requests, retry in %s seconds', 429)
export const BadRedirectError = createError('BAD_REDIRECT', 'The redirect target is not allowed: it must be on PUBLIC_URL or an ALLOWED_ORIGINS origin', 400)
export const InvalidJsonError = createError('INVALID_JSON', 'The request body is not valid JSON', 400)
export { DatabaseUnavailableError, InternalError }

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
  'FST_REPLY_FROM_HTTP_REQUEST_TIMEOUT',
  // The RAG and app upstreams' one deadline per call (gateway/proxy/upstream-call.ts).
  'UPSTREAM_DEADLINE'
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

export const HeaderTooLargeError = createError('HEADER_TOO_LARGE', 'The %s header is too large (at most %s bytes)', 431)

export const GATEWAY_ERRORS = errorRegistry('gateway', [
  { type: BadPathError, meaning: 'the target cannot be normalised safely (`..`, encoded slashes, NUL, backslashes)', action: 'send a plain path' },
  { type: DuplicateHostError, meaning: 'a request with two `Host` headers', action: 'fix the client or proxy' },
  { type: InvalidJsonError, meaning: 'the body of a JSON route is not valid JSON', action: 'send valid JSON' },
  { type: ConsentRequiredError, meaning: 'background data without `consentGiven: true`', action: 'ask the reader for consent' },
  { type: BadRedirectError, meaning: 'a redirect target (`callbackURL` and the like) outside `PUBLIC_URL` and `ALLOWED_ORIGINS`', action: 'redirect to the site itself' },
  { type: UnauthorizedError, meaning: 'the route needs a session or a bearer token', action: 'sign in' },
  { type: InvalidTokenError, meaning: 'the bearer token is invalid, expired or revoked', action: 'refresh it (`/auth/token/refresh`) or get a new one from `/auth/jwt`' },
  { type: InvalidRefreshTokenError, meaning: 'a refresh token that is unknown, used, expired or of an ended login (a used one presented again ends its login)', action: 'log in again (`/auth/login`)' },
  { type: TwoFactorCodeRequiredError, meaning: '`/auth/login` for an account with two-factor sign-in, without `code`', action: 'send the TOTP code as `code`' },
  { type: LoginTokenRequiredError, meaning: '`/auth/logout` with a `/auth/jwt` token, which belongs to no login of its own', action: 'sign out everywhere, or let it expire' },
  { type: InvalidApiKeyError, meaning: 'an API key (`X-API-Key`, or `Authorization: Bearer agk_…`) that is unknown, deleted, disabled, expired, or whose owner is banned or gone; refused on every route that reads the caller, public ones too', action: 'create a new key (`/auth/api-key/create`)' },
  { type: ApiKeyOutOfScopeError, meaning: 'an API key on a route outside its scope (`rag`: the RAG routes; `api`: `/api/*`; never `/auth/*`)', action: 'use a key of a wider scope, or sign in' },
  { type: ForbiddenError, meaning: 'the caller lacks the role the route needs, or no rule allows the route', action: '—' },
  { type: SessionCookieRequiredError, meaning: '`/api/v1/sessions` called with a bearer token, which names no session', action: 'call it from the browser, with the session cookie' },
  { type: TwoFactorRequiredError, meaning: 'an admin route, called by an admin who has not turned two-factor sign-in on, with `ADMIN_REQUIRE_2FA`', action: 'enrol TOTP (`/auth/two-factor/enable`), sign in with it' },
  { type: CsrfRejectedError, meaning: 'a cookie-authenticated change from a foreign origin', action: 'call from an allowed origin' },
  { type: RateLimitedError, meaning: 'the caller\'s budget for the route is spent', action: 'wait `Retry-After` seconds' },
  { type: HeaderTooLargeError, meaning: 'a `Cookie` or `Authorization` header over the gateway\'s limit', action: 'clear cookies or send a shorter token' },
  { type: BadGatewayError, meaning: 'an upstream answered something invalid', action: 'check the upstream' },
  { type: AuthCoreUnavailableError, meaning: 'auth-core does not answer', action: 'check auth-core; public RAG routes keep working anonymously' },
  { type: UpstreamUnavailableError, meaning: 'the RAG or app upstream refuses connections', action: 'check the upstream' },
  { type: RagUpstreamNotConfiguredError, meaning: '`RAG_UPSTREAM_URL` is unset', action: 'set it' },
  { type: UpstreamTimeoutError, meaning: 'an upstream did not answer in time', action: 'check the upstream' }
])

/**
 * The headers of an answer Fastify gives before any hook ran (a URL that does not decode): the
 * security headers, and CORS as `@fastify/cors` grants it to an allowed origin, so the page can
 * read the error.
 */
export function earlyErrorHeaders (security: Readonly<Record<string, string>>, allowedOrigins: readonly string[]): EarlyHeaders {
  const allowed = new Set(allowedOrigins)
  return (request: FastifyRequest) => {
    const origin = request.headers.origin
    if (origin === undefined || !allowed.has(origin)) return { ...security, vary: 'Origin' }
    return { ...security, vary: 'Origin', 'access-control-allow-origin': origin, 'access-control-allow-credentials': 'true' }
  }
}
