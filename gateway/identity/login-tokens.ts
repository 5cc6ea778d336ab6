import { createHash, randomBytes, randomUUID } from 'node:crypto'
import { inTransaction } from '../../shared/db.ts'
import type { Pool } from '../../shared/db.ts'
import { isRevoked, readTokenGeneration } from '../../shared/token-revocation.ts'

/*
 * Logins of token clients (`POST /auth/login`): each is a family of refresh tokens. A refresh token
 * is used once: refreshing marks it used and issues the next of its family; presenting a used one
 * again means two parties hold the family (a token was stolen), and the whole family dies, the
 * newest tokens too. Access tokens name their family (`sid`), so ending the family refuses them at
 * once. Refresh tokens are 256 random bits, stored as their SHA-256 digest (no slow hash is needed
 * for a secret nobody chose).
 */

/** Access tokens of token clients: short-lived, refreshed with the refresh token. */
export const ACCESS_TOKEN_TTL_SECONDS = 15 * 60
/** A refresh token, from its issue; each refresh issues a new one with a new term. */
export const REFRESH_TOKEN_TTL_SECONDS = 30 * 24 * 60 * 60
/** A refresh token is base64url of 32 bytes: 43 characters. */
export const REFRESH_TOKEN_PATTERN = '^[A-Za-z0-9_-]{43}$'

export type FamilyEnd = 'logout' | 'reuse' | 'revoked'

export interface RefreshToken {
  token: string
  expiresAt: Date
}

export interface Login {
  userId: string
  familyId: string
  /** The user's token generation the login began in: its access tokens carry it. */
  generation: number
  refresh: RefreshToken
}

/** A refresh that was refused, and why (`reuse` and `revoked` ended the family just now). */
export interface RefusedRefresh {
  refused: 'unknown' | 'expired' | 'ended' | FamilyEnd
  familyId?: string
  userId?: string
}

function digestOf (token: string): string {
  return createHash('sha256').update(token).digest('base64url')
}

interface FamilyRow {
  family_id: string
  user_id: string
  generation: number
  revoked_at: Date | null
  used_at: Date | null
  expired: boolean
}

// A login ended by its client; one already ended keeps its end and the reason.
const END_BY_LOGOUT = "revoked_at = coalesce(revoked_at, now()), revoked_reason = coalesce(revoked_reason, 'logout')"

const ISSUE = `INSERT INTO refresh_token (digest, family_id, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3))
  RETURNING expires_at`

export class LoginTokens {
  readonly #pool: Pool

  constructor (pool: Pool) {
    this.#pool = pool
  }

  /** A new login of the user, in the token generation the user is in now (a later revocation ends it). */
  async begin (userId: string): Promise<Login | null> {
    return inTransaction(this.#pool, 'BEGIN', async (client) => {
      const generation = await readTokenGeneration(client, userId)
      if (!Number.isFinite(generation)) return null
      const familyId = randomUUID()
      await client.query('INSERT INTO token_family (id, user_id, generation) VALUES ($1, $2, $3)', [familyId, userId, generation])
      const refresh = await issue(client, familyId)
      return { userId, familyId, generation, refresh }
    })
  }

  /** The next refresh token of the family, the presented one used up; or why not. */
  async rotate (token: string): Promise<Login | RefusedRefresh> {
    const digest = digestOf(token)
    return inTransaction(this.#pool, 'BEGIN', async (client) => {
      // Both rows are locked: two refreshes of one token take turns, and the second reads the token's
      // row again once the first committed (Postgres re-reads only the rows it locked), so it sees the use.
      const { rows } = await client.query<FamilyRow>(
        `SELECT t.family_id, f.user_id, f.generation, f.revoked_at, t.used_at, t.expires_at <= now() AS expired
           FROM refresh_token t JOIN token_family f ON f.id = t.family_id
          WHERE t.digest = $1
          FOR UPDATE OF t, f`,
        [digest]
      )
      if (rows.length === 0) return { refused: 'unknown' }
      const row = rows[0]
      const named = { familyId: row.family_id, userId: row.user_id }
      if (row.revoked_at !== null) return { refused: 'ended', ...named }
      if (row.used_at !== null) {
        await endFamily(client, row.family_id, 'reuse')
        return { refused: 'reuse', ...named }
      }
      if (row.expired) return { refused: 'expired', ...named }
      // Signed out everywhere, a new password, a ban since the login began: the family ends with it.
      if (isRevoked(row.generation, await readTokenGeneration(client, row.user_id))) {
        await endFamily(client, row.family_id, 'revoked')
        return { refused: 'revoked', ...named }
      }
      // Only an unused token is used up: 0 rows is a second use, whatever the read above saw.
      const used = await client.query('UPDATE refresh_token SET used_at = now() WHERE digest = $1 AND used_at IS NULL', [digest])
      if (used.rowCount !== 1) {
        await endFamily(client, row.family_id, 'reuse')
        return { refused: 'reuse', ...named }
      }
      return { ...named, generation: row.generation, refresh: await issue(client, row.family_id) }
    })
  }

  /** Ends the family of a refresh token (logout without an access token); its family and user, or null when unknown. */
  async endByRefreshToken (token: string): Promise<{ familyId: string, userId: string } | null> {
    const { rows } = await this.#pool.query<{ family_id: string, user_id: string }>(
      `UPDATE token_family f SET ${END_BY_LOGOUT}
         FROM refresh_token t WHERE t.digest = $1 AND f.id = t.family_id
       RETURNING f.id AS family_id, f.user_id`,
      [digestOf(token)]
    )
    return rows.length === 0 ? null : { familyId: rows[0].family_id, userId: rows[0].user_id }
  }

  /** Ends a family (logout with its access token); false when it does not exist. */
  async end (familyId: string): Promise<boolean> {
    const { rowCount } = await this.#pool.query(
      `UPDATE token_family SET ${END_BY_LOGOUT} WHERE id = $1`,
      [familyId]
    )
    return rowCount !== null && rowCount > 0
  }

}

type Queryable = Pick<Pool, 'query'>

async function issue (client: Queryable, familyId: string): Promise<RefreshToken> {
  const token = randomBytes(32).toString('base64url')
  const { rows } = await client.query<{ expires_at: Date }>(ISSUE, [digestOf(token), familyId, REFRESH_TOKEN_TTL_SECONDS])
  return { token, expiresAt: rows[0].expires_at }
}

async function endFamily (client: Queryable, familyId: string, reason: FamilyEnd): Promise<void> {
  await client.query('UPDATE token_family SET revoked_at = now(), revoked_reason = $2 WHERE id = $1 AND revoked_at IS NULL', [familyId, reason])
}
