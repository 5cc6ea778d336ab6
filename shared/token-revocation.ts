import type { Pool } from './db.ts'

/** The response header by which auth-core tells the gateway whose tokens it just revoked (never sent on to clients). */
export const REVOKED_USER_HEADER = 'x-auth-gateway-revoked-user'

/*
 * "Sign out everywhere" for stateless tokens: one timestamp per user (table `token_revocation`);
 * bearer tokens issued before it are refused by the gateway and by auth-core alike.
 */

/** What `readTokensValidAfter` answers for a user who no longer exists: every token is refused. */
export const USER_GONE = Number.POSITIVE_INFINITY

/**
 * Bearer tokens of the user issued before this time (ms since the epoch) are refused; 0 when never
 * revoked, `USER_GONE` when the account was deleted (its revocation row went with it).
 */
export async function readTokensValidAfter (db: Pool, userId: string): Promise<number> {
  const { rows } = await db.query<{ at: Date | null }>(
    'SELECT r.tokens_valid_after AS at FROM "user" u LEFT JOIN token_revocation r ON r.user_id = u.id WHERE u.id = $1',
    [userId]
  )
  if (rows.length === 0) return USER_GONE
  return rows[0].at === null ? 0 : rows[0].at.getTime()
}

/**
 * Refuses every token of the user issued until now. Token `iat` has one-second resolution, so the
 * boundary is the next whole second: a token issued in this very second is refused too.
 */
export async function revokeTokensNow (db: Pool, userId: string): Promise<void> {
  await db.query(
    `INSERT INTO token_revocation (user_id, tokens_valid_after) VALUES ($1, date_trunc('second', now()) + interval '1 second')
     ON CONFLICT (user_id) DO UPDATE SET tokens_valid_after = EXCLUDED.tokens_valid_after`,
    [userId]
  )
}

/** Whether a token issued at `iat` (seconds) predates the user's revocation time (ms). */
export function issuedBeforeRevocation (iat: number, validAfterMs: number): boolean {
  return iat * 1000 < validAfterMs
}
