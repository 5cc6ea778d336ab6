import type { FastifyBaseLogger } from 'fastify'
import type { TokenClaims } from '../../../shared/jwt.ts'
import { isDatabaseUnavailable } from '../../../shared/errors.ts'
import type { ClaimProvider, Identity, IdentityResolver } from '../../identity/identity-resolver.ts'
import type { ProfileRepository } from '../../repositories/profile-repository.ts'
import { TtlCache } from '../../ttl-cache.ts'

const NO_CLAIMS: TokenClaims = Object.freeze({})

/**
 * Profile fields travel in upstream identity tokens only while consent is given. Read through a short
 * cache (no Postgres round trip per RAG call) that every write evicts at once, on this replica and
 * (with the revocation broadcast) on every other, so the very next request after a withdrawal
 * carries none of them. While Postgres is away the token carries no profile claims: what cannot be
 * read as consented is not sent, and the signed-in caller is answered as with no profile.
 */
export class ConsentedClaims {
  readonly #repository: ProfileRepository
  readonly #cache: TtlCache<string, TokenClaims>
  readonly #identities: IdentityResolver
  readonly #log: FastifyBaseLogger
  // Bumped by every write: a read that overlapped a write is not cached.
  readonly #writes = new Map<string, number>()

  constructor (repository: ProfileRepository, ttlMs: number, identities: IdentityResolver, log: FastifyBaseLogger) {
    this.#repository = repository
    this.#cache = new TtlCache(ttlMs)
    this.#identities = identities
    this.#log = log
    identities.onForget((revocation) => {
      if (revocation === 'all') this.#cache.clear()
      else if ('claims' in revocation) this.#cache.delete(revocation.claims)
      else if ('user' in revocation) this.#cache.delete(revocation.user)
    })
  }

  readonly provider: ClaimProvider = (identity) => this.#cache.get(identity.userId) ?? this.#load(identity)

  async #load (identity: Identity): Promise<TokenClaims> {
    const writesBefore = this.#writes.get(identity.userId)
    let claims: TokenClaims
    try {
      claims = await this.#repository.consentedClaims(identity.userId)
    } catch (err) {
      if (!isDatabaseUnavailable(err)) throw err
      this.#log.warn({ err, userId: identity.userId }, 'consented profile claims unreadable: identity token sent without them')
      return NO_CLAIMS
    }
    if (this.#writes.get(identity.userId) === writesBefore) this.#cache.set(identity.userId, claims)
    return claims
  }

  /** Around every profile write: forget the claims and refuse to cache reads that overlap it. */
  async writing<T> (userId: string, write: () => Promise<T>): Promise<T> {
    this.#writes.set(userId, (this.#writes.get(userId) ?? 0) + 1)
    this.#cache.delete(userId)
    try {
      return await write()
    } finally {
      this.#cache.delete(userId)
      const left = (this.#writes.get(userId) ?? 1) - 1
      if (left === 0) this.#writes.delete(userId)
      else this.#writes.set(userId, left)
      // Answered once the other replicas forgot too (or Redis timed out).
      await this.#identities.announce({ claims: userId })
    }
  }
}

/** The claim provider alone, reading fresh each time (tests and single calls). */
export function profileClaimProvider (repository: ProfileRepository): ClaimProvider {
  return async (identity) => repository.consentedClaims(identity.userId)
}
