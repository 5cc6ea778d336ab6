import type { FastifyInstance, FastifyReply } from 'fastify'
import type { IncomingHttpHeaders } from 'node:http'
import { DEFAULT_TOKEN_TTL_SECONDS, userOfToken } from '../../shared/jwt.ts'
import type { VerifiedToken } from '../../shared/jwt.ts'
import { UnauthorizedError, upstreamError } from '../errors.ts'
import { GENERATION_CLAIM, USER_GONE } from '../../shared/token-revocation.ts'
import { allowedHeaders, AUTH_CORE_REQUEST_HEADERS } from '../proxy/forwarded-headers.ts'
import { callerOf } from '../identity/identity-resolver.ts'
import type { Identity, SessionUser } from '../identity/identity-resolver.ts'
import { forwardedHeaders } from './auth-proxy.ts'
import { AUTH_CORE_PREFIX } from '../route-paths.ts'

export const TOKEN_PATH = '/auth/jwt'
export const JWKS_PATH = '/auth/jwks'
/** Upstreams may cache the key set this long; a token naming an unknown `kid` makes them fetch it again. */
const JWKS_MAX_AGE_SECONDS = 300
export const VALIDATE_SESSION_PATH = '/api/validate-session'
/** Seed-compatible alias of better-auth's `POST /update-user`, which changes the method too. */
export const PROFILE_UPDATE_PATH = '/auth/user/profile'
const UPDATE_USER_TARGET = `${AUTH_CORE_PREFIX}/update-user`

export interface TokenRoutesOptions {
  /** The host and protocol auth-core is told the client used. */
  publicUrl: string
}

export interface TokenResponse {
  token: string
  /** ISO 8601. */
  expiresAt: string
}

export interface ValidateSessionResponse {
  user: SessionUser | null
  /** The better-auth session for a cookie; `null` for a bearer token, which has no server session. */
  session?: Record<string, unknown> | null
}

/** Seconds a new token may live: 7 days, but never beyond the bearer token it was minted with. */
function tokenTtl (identity: Identity, now: number): number {
  if (identity.via !== 'bearer') return DEFAULT_TOKEN_TTL_SECONDS
  const exp = identity.user.exp
  // Otherwise one stolen token could be refreshed for ever; revocation still applies to both.
  return typeof exp === 'number' ? Math.max(1, Math.min(DEFAULT_TOKEN_TTL_SECONDS, exp - Math.floor(now / 1000))) : DEFAULT_TOKEN_TTL_SECONDS
}

/** The user a bearer token vouches for, as auth-core's validate-session answers it. */
function bearerUser (user: SessionUser): SessionUser {
  return userOfToken(user as unknown as VerifiedToken)
}

function noStore (reply: FastifyReply): void {
  reply.header('cache-control', 'no-store')
}

/**
 * `GET /auth/jwt` (a 7-day HS256 token), `GET /api/validate-session` (who a cookie or bearer token
 * belongs to, for Python backends) and `PATCH /auth/user/profile` (better-auth's update-user).
 */
export default async function tokenRoutes (app: FastifyInstance, options: TokenRoutesOptions): Promise<void> {
  const toAuthCore = forwardedHeaders(options.publicUrl)
  app.get(TOKEN_PATH, async (request, reply): Promise<TokenResponse> => {
    const identity = callerOf(request)
    // The token belongs to the user's current generation: the next revocation refuses it.
    const generation = await app.identities.tokenGeneration(identity.userId)
    if (generation === USER_GONE) throw new UnauthorizedError()
    const now = Date.now()
    const { token, expiresAt } = await app.clientTokens.signer.sign(
      identity.userId,
      { email: identity.email, name: identity.name, ...identity.claims, [GENERATION_CLAIM]: generation },
      tokenTtl(identity, now),
      now
    )
    noStore(reply)
    request.log.info({ event: 'token_issued', userId: identity.userId, via: identity.via }, 'token issued')
    return { token, expiresAt: expiresAt.toISOString() }
  })

  // Public keys only: identity tokens' keys (and client tokens' with JWT_ALG=EdDSA).
  app.get(JWKS_PATH, async (_request, reply) => {
    reply.header('cache-control', `public, max-age=${JWKS_MAX_AGE_SECONDS}`)
    return app.keyRing.jwks()
  })

  app.get(VALIDATE_SESSION_PATH, { config: { identity: 'optional' } }, async (request, reply): Promise<ValidateSessionResponse> => {
    noStore(reply)
    // The policy ignores a failed look-up on a public route; here "auth-core or the database is down"
    // must not read as "signed out" to the backend asking. A bad token is simply no user.
    const failure = request.identityFailure
    if (failure !== null && failure.statusCode !== undefined && failure.statusCode >= 500) throw failure
    const identity = request.identity
    if (identity === null) return { user: null }
    if (identity.via === 'bearer') return { user: bearerUser(identity.user), session: null }
    return { user: identity.user, session: identity.session }
  })

  app.patch(PROFILE_UPDATE_PATH, { schema: { body: { type: 'object' } } }, async (request, reply) => {
    // The body is sent again as JSON, whatever the client's own content headers said.
    const headers: IncomingHttpHeaders = { ...allowedHeaders(request.headers, AUTH_CORE_REQUEST_HEADERS), 'content-type': 'application/json', accept: 'application/json' }
    let response
    try {
      response = await app.authCore.request({
        method: 'POST',
        path: UPDATE_USER_TARGET,
        headers: toAuthCore(request, headers),
        body: JSON.stringify(request.body ?? {})
      })
    } catch (err) {
      throw upstreamError(err, 'auth')
    }
    const text = await response.body.text()
    const setCookie = response.headers['set-cookie']
    if (setCookie !== undefined) reply.header('set-cookie', setCookie)
    const type = response.headers['content-type']
    if (typeof type === 'string') reply.type(type)
    noStore(reply)
    if (response.statusCode === 200) {
      // Cached session look-ups still hold the old name and fields.
      app.identities.evict(request.headers.cookie)
      request.log.info({ event: 'profile_update' }, 'user updated')
    }
    return reply.code(response.statusCode).send(text)
  })
}
