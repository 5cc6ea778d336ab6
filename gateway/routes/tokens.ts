import type { FastifyInstance } from 'fastify'
import { DEFAULT_TOKEN_TTL_SECONDS } from '../../shared/jwt.ts'
import { UnauthorizedError } from '../errors.ts'
import { GENERATION_CLAIM, USER_GONE } from '../../shared/token-revocation.ts'
import { callerOf } from '../identity/identity-resolver.ts'
import type { Identity } from '../identity/identity-resolver.ts'

export const TOKEN_PATH = '/auth/jwt'
export const JWKS_PATH = '/auth/jwks'
/** Upstreams may cache the key set this long; a token naming an unknown `kid` makes them fetch it again. */
const JWKS_MAX_AGE_SECONDS = 300

export interface TokenResponse {
  token: string
  /** ISO 8601. */
  expiresAt: string
}


/** Seconds a new token may live: 7 days, but never beyond the bearer token it was minted with. */
function tokenTtl (identity: Identity, now: number): number {
  if (identity.via !== 'bearer') return DEFAULT_TOKEN_TTL_SECONDS
  const exp = identity.user.exp
  // Otherwise one stolen token could be refreshed for ever; revocation still applies to both.
  return typeof exp === 'number' ? Math.max(1, Math.min(DEFAULT_TOKEN_TTL_SECONDS, exp - Math.floor(now / 1000))) : DEFAULT_TOKEN_TTL_SECONDS
}

/** `GET /auth/jwt` (a client token for the caller) and `GET /auth/jwks` (the published public keys). */
export default async function tokenRoutes (app: FastifyInstance): Promise<void> {
  app.get(TOKEN_PATH, {
    schema: {
      summary: 'A client token for the caller',
      description: 'A JWT (HS256, or EdDSA with `JWT_ALG=EdDSA`; `iss: "better-auth"`) with `sub`, `email`, `name` and the custom user fields, for `Authorization: Bearer` (docs/tokens.md). Never longer-lived than the bearer token it was asked with.',
      tags: ['Tokens'],
      response: { 200: { description: 'The token', type: 'object', required: ['token', 'expiresAt'], properties: { token: { type: 'string' }, expiresAt: { type: 'string', format: 'date-time' } } } }
    }
  }, async (request, reply): Promise<TokenResponse> => {
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
    reply.header('cache-control', 'no-store')
    request.log.info({ event: 'token_issued', userId: identity.userId, via: identity.via }, 'token issued')
    return { token, expiresAt: expiresAt.toISOString() }
  })

  // Public keys only: identity tokens' keys (and client tokens' with JWT_ALG=EdDSA).
  app.get(JWKS_PATH, {
    schema: {
      summary: 'The public keys (JWKS) of identity tokens (and of client tokens with JWT_ALG=EdDSA)',
      description: 'A JSON Web Key Set, cacheable for five minutes; a token naming an unknown `kid` means fetch it again.',
      tags: ['Tokens']
    }
  }, async (_request, reply) => {
    reply.header('cache-control', `public, max-age=${JWKS_MAX_AGE_SECONDS}`)
    return app.keyRing.jwks()
  })
}
