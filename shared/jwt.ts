import { jwtVerify, SignJWT } from 'jose'
import type { JWTPayload } from 'jose'

export const JWT_ISSUER = 'better-auth'
export const JWT_ALGORITHM = 'HS256'
/** Tokens from `GET /auth/jwt`. */
export const DEFAULT_TOKEN_TTL_SECONDS = 7 * 24 * 60 * 60
/** Identity tokens the gateway attaches to upstream requests. */
export const IDENTITY_TOKEN_TTL_SECONDS = 5 * 60
export const CLOCK_TOLERANCE_SECONDS = 30

const BEARER = /^Bearer\s+([A-Za-z0-9_\-.]+)\s*$/i

/** The token of an `Authorization: Bearer <jwt>` header, or null for anything else. */
export function bearerToken (authorization: string | undefined): string | null {
  if (authorization === undefined) return null
  return BEARER.exec(authorization)?.[1] ?? null
}

/** Claims besides the registered ones: `email`, `name`, custom user fields, consented profile fields. */
export type TokenClaims = Record<string, string | number | boolean | null>

export interface VerifiedToken extends JWTPayload {
  sub: string
  iat: number
  exp: number
}

/**
 * HS256 signing and verification with one key, imported once (no per-request key work).
 * Verification pins the algorithm and issuer, so `alg: none`, HS512 or another issuer never pass.
 */
export class JwtKeys {
  readonly #key: Uint8Array

  constructor (secret: string) {
    this.#key = new TextEncoder().encode(secret)
  }

  async sign (subject: string, claims: TokenClaims, ttlSeconds: number, now: number = Date.now()): Promise<{ token: string, expiresAt: Date }> {
    const iat = Math.floor(now / 1000)
    const exp = iat + ttlSeconds
    const token = await new SignJWT({ ...claims })
      .setProtectedHeader({ alg: JWT_ALGORITHM, typ: 'JWT' })
      .setIssuer(JWT_ISSUER)
      .setSubject(subject)
      .setIssuedAt(iat)
      .setExpirationTime(exp)
      .sign(this.#key)
    return { token, expiresAt: new Date(exp * 1000) }
  }

  /** Throws (a jose error) for a bad signature, algorithm, issuer or an expired token. */
  async verify (token: string): Promise<VerifiedToken> {
    const { payload } = await jwtVerify(token, this.#key, {
      algorithms: [JWT_ALGORITHM],
      issuer: JWT_ISSUER,
      clockTolerance: CLOCK_TOLERANCE_SECONDS,
      requiredClaims: ['sub', 'iat', 'exp']
    })
    return payload as VerifiedToken
  }
}
