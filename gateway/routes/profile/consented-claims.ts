import type { TokenClaims } from '../../../shared/jwt.ts'
import type { ClaimProvider, Identity } from '../../identity/identity-resolver.ts'
import type { ProfileRepository } from '../../repositories/profile-repository.ts'
import { TtlCache } from '../../ttl-cache.ts'

/**
 * Profile fields travel in upstream identity tokens only while consent is given. Read through a short
 * cache (no Postgres round trip per RAG call) that every write through this gateway evicts at once,
 * so the very next request after a withdrawal carries none of them.
 */
export class ConsentedClaims {
  readonly #repository: ProfileRepository
  readonly #cache: TtlCache<string, TokenClaims>
  // Bumped by every write: a read that overlapped a write is not cached.
  readonly #writes = new Map<string, number>()

  constructor (repository: ProfileRepository, ttlMs: number) {
    this.#repository = repository
    this.#cache = new TtlCache(ttlMs)
  }

  readonly provider: ClaimProvider = (identity) => this.#cache.get(identity.userId) ?? this.#load(identity)

  async #load (identity: Identity): Promise<TokenClaims> {
    const writesBefore = this.#writes.get(identity.userId)
    const claims = await this.#repository.consentedClaims(identity.userId)
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
    }
  }
}

/** The claim provider alone, reading fresh each time (tests and single calls). */
export function profileClaimProvider (repository: ProfileRepository): ClaimProvider {
  return async (identity) => repository.consentedClaims(identity.userId)
}
