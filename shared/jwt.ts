import { decodeProtectedHeader, jwtVerify, SignJWT } from 'jose'
import type { JWTPayload } from 'jose'
import { SIGNING_ALGORITHM } from './signing-keys.ts'
import type { KeyRing } from './signing-keys.ts'
import { GENERATION_CLAIM, LOGIN_CLAIM } from './token-revocation.ts'

export const JWT_ISSUER = 'better-auth'
export const JWT_ALGORITHM = 'HS256'
/** Tokens from `GET /auth/jwt`. */
export const DEFAULT_TOKEN_TTL_SECONDS = 7 * 24 * 60 * 60
/** Identity tokens the gateway attaches to upstream requests. */
export const IDENTITY_TOKEN_TTL_SECONDS = 5 * 60
export const CLOCK_TOLERANCE_SECONDS = 30
/** The `typ` of identity tokens, so no verifier mistakes one for a client token. */
export const IDENTITY_TOKEN_TYPE = 'identity+jwt'

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

export interface SignedToken {
  token: string
  expiresAt: Date
}

/** Signs tokens of one kind: a key, an algorithm and (for identity tokens) an audience. */
export interface TokenSigner {
  sign: (subject: string, claims: TokenClaims, ttlSeconds: number, now?: number) => Promise<SignedToken>
}

interface SigningParams {
  alg: string
  kid?: string
  typ: string
  audience?: string
}

async function signWith (key: Uint8Array | CryptoKey, params: SigningParams, subject: string, claims: TokenClaims, ttlSeconds: number, now: number): Promise<SignedToken> {
  const iat = Math.floor(now / 1000)
  const exp = iat + ttlSeconds
  const jwt = new SignJWT({ ...claims })
    .setProtectedHeader({ alg: params.alg, typ: params.typ, ...(params.kid === undefined ? {} : { kid: params.kid }) })
    .setIssuer(JWT_ISSUER)
    .setSubject(subject)
    .setIssuedAt(iat)
    .setExpirationTime(exp)
  if (params.audience !== undefined) jwt.setAudience(params.audience)
  return { token: await jwt.sign(key), expiresAt: new Date(exp * 1000) }
}

export interface VerifyOptions {
  /** Seconds an expired token still passes (logging out with an expired token); the clock tolerance by default. */
  expiredFor?: number
}

function verifyOptions ({ expiredFor = 0 }: VerifyOptions) {
  return { issuer: JWT_ISSUER, clockTolerance: Math.max(CLOCK_TOLERANCE_SECONDS, expiredFor), requiredClaims: ['sub', 'iat', 'exp'] }
}

/**
 * HS256 with one key, imported once (no per-request key work): `JWT_SECRET` for client tokens, or an
 * upstream's own secret for its identity tokens. Neither carries `aud` (PyJWT's usual
 * `jwt.decode(token, secret, algorithms=["HS256"], issuer="better-auth")` refuses one); the key binds
 * the audience. Verification pins the algorithm and issuer and refuses any token with an `aud`.
 */
export class JwtKeys implements TokenSigner {
  readonly #key: Uint8Array
  readonly #typ: string

  constructor (secret: string, typ = 'JWT') {
    this.#key = new TextEncoder().encode(secret)
    this.#typ = typ
  }

  async sign (subject: string, claims: TokenClaims, ttlSeconds: number, now: number = Date.now()): Promise<SignedToken> {
    return signWith(this.#key, { alg: JWT_ALGORITHM, typ: this.#typ }, subject, claims, ttlSeconds, now)
  }

  /** Throws (a jose error) for a bad signature, algorithm, issuer, an audience or an expired token (`options.expiredFor`: expired longer ago). */
  async verify (token: string, options: VerifyOptions = {}): Promise<VerifiedToken> {
    const { payload } = await jwtVerify(token, this.#key, { ...verifyOptions(options), algorithms: [JWT_ALGORITHM] })
    if (payload.aud !== undefined) throw new TokenRefusedError('the token is bound to an audience')
    return payload as VerifiedToken
  }
}

/** EdDSA with the newest key of one purpose in the ring (`kid` in the header), optionally for an audience. */
export class EdDsaSigner implements TokenSigner {
  readonly #ring: KeyRing
  readonly #purpose: 'identity' | 'client'
  readonly #audience: string | undefined

  constructor (ring: KeyRing, purpose: 'identity' | 'client', audience?: string) {
    this.#ring = ring
    this.#purpose = purpose
    this.#audience = audience
  }

  async sign (subject: string, claims: TokenClaims, ttlSeconds: number, now: number = Date.now()): Promise<SignedToken> {
    const key = this.#ring.signingKey(this.#purpose)
    const typ = this.#purpose === 'identity' ? IDENTITY_TOKEN_TYPE : 'JWT'
    return signWith(key.privateKey, { alg: SIGNING_ALGORITHM, kid: key.kid, typ, audience: this.#audience }, subject, claims, ttlSeconds, now)
  }
}

// Registered claims (and the token generation and login) are the token's, not the user's.
const REGISTERED_CLAIMS = new Set(['iss', 'sub', 'aud', 'iat', 'nbf', 'exp', 'jti', GENERATION_CLAIM, LOGIN_CLAIM])

/** The user a client token vouches for: its claims less the registered ones, `sub` as `id`. */
export function userOfToken (payload: VerifiedToken): { id: string, email: string, name: string, [claim: string]: unknown } {
  const user: { id: string, email: string, name: string, [claim: string]: unknown } = { id: payload.sub, email: String(payload.email ?? ''), name: String(payload.name ?? '') }
  for (const [key, value] of Object.entries(payload)) {
    if (!REGISTERED_CLAIMS.has(key) && !(key in user)) user[key] = value
  }
  return user
}

export class TokenRefusedError extends Error {
  override name = 'TokenRefusedError'
}

/**
 * The only tokens the gateway (and auth-core's validate-session) accept as a bearer: client tokens,
 * HS256 under `JWT_SECRET` or, with `JWT_ALG=EdDSA`, EdDSA under a *client* key of the ring. An
 * identity token (another key, an audience) never passes, whoever replays it.
 */
export class ClientTokenVerifier {
  readonly #hmac: JwtKeys
  readonly #ring: KeyRing | null

  constructor (jwtSecret: string, ring: KeyRing | null) {
    this.#hmac = new JwtKeys(jwtSecret)
    this.#ring = ring
  }

  async verify (token: string, options: VerifyOptions = {}): Promise<VerifiedToken> {
    let header
    try {
      header = decodeProtectedHeader(token)
    } catch {
      throw new TokenRefusedError('the token is not a JWT')
    }
    if (header.alg === JWT_ALGORITHM) return this.#hmac.verify(token, options)
    if (header.alg !== SIGNING_ALGORITHM || this.#ring === null || typeof header.kid !== 'string') throw new TokenRefusedError('unexpected token algorithm')
    const key = await this.#ring.verificationKey(header.kid, 'client')
    if (key === null) throw new TokenRefusedError('the token is not signed with a client key')
    const { payload } = await jwtVerify(token, key, { ...verifyOptions(options), algorithms: [SIGNING_ALGORITHM] })
    if (payload.aud !== undefined) throw new TokenRefusedError('the token is bound to an audience')
    return payload as VerifiedToken
  }
}
