import type { Pool, PoolClient } from './db.ts'

/** The response header by which auth-core tells the gateway whose tokens it just revoked (never sent on to clients). */
export const REVOKED_USER_HEADER = 'x-auth-gateway-revoked-user'

/** The response header by which auth-core names an API key it just deleted or changed (never sent on to clients). */
export const REVOKED_API_KEY_HEADER = 'x-auth-gateway-revoked-api-key'

/** The claim of a client token naming the user's token generation it was issued in. */
export const GENERATION_CLAIM = 'gen'
/** The claim of an access token from `POST /auth/login` naming its login (refresh family), as OpenID Connect names a session. */
export const LOGIN_CLAIM = 'sid'

/*
 * "Sign out everywhere" for stateless tokens: one generation number per user (table
 * `token_revocation`), raised by every revocation. A client token carries the generation it was
 * issued in (`gen`) and passes only while that is still the user's: a revocation refuses every older
 * token at once, and a token minted a millisecond later is valid at once (no clock resolution).
 */

/** What `readTokenGeneration` answers for a user who no longer exists: no token's generation reaches it. */
export const USER_GONE = Number.POSITIVE_INFINITY

/** The user's current token generation: 0 when never revoked, `USER_GONE` when the account was deleted. */
export async function readTokenGeneration (db: Pool | PoolClient, userId: string): Promise<number> {
  const { rows } = await db.query<{ generation: number | null }>(
    'SELECT r.generation FROM "user" u LEFT JOIN token_revocation r ON r.user_id = u.id WHERE u.id = $1',
    [userId]
  )
  if (rows.length === 0) return USER_GONE
  return rows[0].generation ?? 0
}

/** Refuses every token of the user issued until now: the next generation begins. */
export async function revokeTokensNow (db: Pool, userId: string): Promise<void> {
  await db.query(
    `INSERT INTO token_revocation (user_id, tokens_valid_after, generation) VALUES ($1, now(), 1)
     ON CONFLICT (user_id) DO UPDATE SET tokens_valid_after = now(), generation = token_revocation.generation + 1`,
    [userId]
  )
}

/** The generation a verified token was issued in (tokens from before generations existed: 0). */
export function generationOf (payload: Record<string, unknown>): number {
  const generation = payload[GENERATION_CLAIM]
  return typeof generation === 'number' && Number.isInteger(generation) && generation >= 0 ? generation : 0
}

/** Whether a token of generation `tokenGeneration` was revoked: issued before the user's current one. */
export function isRevoked (tokenGeneration: number, currentGeneration: number): boolean {
  return tokenGeneration < currentGeneration
}

/** The login a verified token belongs to (`POST /auth/login`), or null for a `/auth/jwt` token. */
export function loginOf (payload: Record<string, unknown>): string | null {
  const login = payload[LOGIN_CLAIM]
  return typeof login === 'string' && login !== '' ? login : null
}

/** Whether a login's access tokens still pass: its family exists (its user too) and has not ended. */
export async function isLoginLive (db: Pool | PoolClient, login: string): Promise<boolean> {
  const { rows } = await db.query<{ live: boolean }>('SELECT revoked_at IS NULL AS live FROM token_family WHERE id = $1', [login])
  return rows.length === 1 && rows[0].live
}
