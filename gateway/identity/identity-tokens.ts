import { createHmac, hkdfSync } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { EdDsaSigner, IDENTITY_TOKEN_TTL_SECONDS, IDENTITY_TOKEN_TYPE, JwtKeys } from '../../shared/jwt.ts'
import type { TokenClaims, TokenSigner } from '../../shared/jwt.ts'
import type { UpstreamName, UpstreamTokenConfig } from '../../shared/config.ts'
import { TtlCache } from '../ttl-cache.ts'
import type { Identity } from './identity-resolver.ts'

// An identity token is reused until this much of its life is left, then signed again.
const TOKEN_REUSE_MARGIN_MS = 60_000
const TOKEN_REUSE_MS = IDENTITY_TOKEN_TTL_SECONDS * 1000 - TOKEN_REUSE_MARGIN_MS
const TOKEN_HIT = Object.freeze({ cache: 'identity_token', result: 'hit' })
const TOKEN_MISS = Object.freeze({ cache: 'identity_token', result: 'miss' })

interface IssuedToken {
  /** What each claim provider answered when the token was signed (compared by reference). */
  extras: readonly TokenClaims[]
  upstream: UpstreamIdentity
  reuseUntil: number
}

/** What an upstream learns of a signed-in caller: its token and the `X-User-Id` (and `X-Api-Key-Id`) to send beside it. */
export interface UpstreamIdentity {
  token: string
  userId: string
  /** The id of the API key the call was made with (also the token's `api_key` claim). */
  apiKeyId?: string
}

/**
 * A keyed hash of user and audience: stable for one user at one upstream, unlinkable across
 * upstreams and to accounts without `JWT_SECRET`.
 */
export function pseudonymousSubjects (jwtSecret: string): (userId: string, audience: string) => string {
  const key = Buffer.from(hkdfSync('sha256', jwtSecret, 'auth-gateway', 'pseudonymous subject v1', 32))
  return (userId, audience) => createHmac('sha256', key).update(`${audience}\n${userId}`).digest('base64url')
}

/**
 * Identity tokens for one upstream, bound to it: signed with its own HS256 secret, or EdDSA with
 * `aud` = its name. Reused while the same claims hold: one signature per user every few minutes
 * instead of one per request. A cached identity whose claim providers answer with the very objects
 * they answered last time gets its token back at once, without serialising the claims again.
 */
export class IdentityTokens {
  readonly #app: FastifyInstance
  readonly #audience: UpstreamName
  readonly #signer: TokenSigner
  readonly #subject: ((userId: string) => string) | null
  readonly #signed = new TtlCache<string, { token: string, reuseUntil: number }>(TOKEN_REUSE_MS)
  readonly #issued = new WeakMap<Identity, IssuedToken>()

  constructor (app: FastifyInstance, audience: UpstreamName, config: UpstreamTokenConfig, pseudonym: (userId: string, audience: string) => string) {
    this.#app = app
    this.#audience = audience
    this.#signer = config.jwtSecret === undefined ? new EdDsaSigner(app.keyRing, 'identity', audience) : new JwtKeys(config.jwtSecret, IDENTITY_TOKEN_TYPE)
    this.#subject = config.subject === 'pseudonymous' ? (userId) => pseudonym(userId, audience) : null
  }

  for (identity: Identity): UpstreamIdentity | Promise<UpstreamIdentity> {
    const extras = this.#app.identityClaimProviders.map((provider) => provider(identity))
    if (extras.some((extra) => extra instanceof Promise)) return Promise.all(extras).then((resolved) => this.#token(identity, resolved))
    return this.#token(identity, extras as TokenClaims[])
  }

  #token (identity: Identity, extras: readonly TokenClaims[]): UpstreamIdentity | Promise<UpstreamIdentity> {
    const issued = this.#issued.get(identity)
    if (issued !== undefined && issued.reuseUntil > Date.now() && issued.extras.length === extras.length && issued.extras.every((extra, i) => extra === extras[i])) {
      this.#app.metrics?.cacheReads.inc(TOKEN_HIT)
      return issued.upstream
    }
    const subject = this.#subject === null ? identity.userId : this.#subject(identity.userId)
    // A pseudonymous upstream gets no direct identifier: no email, no name.
    const named = this.#subject === null ? { email: identity.email, name: identity.name } : {}
    const claims: TokenClaims = Object.assign(named, identity.claims, ...extras)
    const key = `${subject}\n${JSON.stringify(claims)}`
    const remember = (signed: { token: string, reuseUntil: number }): UpstreamIdentity => {
      const upstream: UpstreamIdentity = identity.apiKey === undefined ? { token: signed.token, userId: subject } : { token: signed.token, userId: subject, apiKeyId: identity.apiKey.id }
      this.#issued.set(identity, { extras, upstream, reuseUntil: signed.reuseUntil })
      return upstream
    }
    const cached = this.#signed.get(key)
    this.#app.metrics?.cacheReads.inc(cached === undefined ? TOKEN_MISS : TOKEN_HIT)
    if (cached !== undefined) return remember(cached)
    return this.#signer.sign(subject, claims, IDENTITY_TOKEN_TTL_SECONDS).then(({ token, expiresAt }) => {
      // Reused until a minute before it expires, so an upstream never receives a nearly dead token.
      const signed = { token, reuseUntil: expiresAt.getTime() - TOKEN_REUSE_MARGIN_MS }
      this.#signed.set(key, signed)
      return remember(signed)
    })
  }
}

