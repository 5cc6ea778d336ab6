import type { Pool } from '../shared/db.ts'

/** The consent log's policy version for an account that never consented. */
export const NO_CONSENT_VERSION = 'none'

/**
 * Deleting an account erases the user, sessions, token generation and profile (foreign keys
 * cascade), and appends one `erased` entry to the consent log: proof that the data is gone, holding
 * no profile data. The consent log itself is kept (its entries name the user id only).
 */
export function accountErasure (pool: Pool) {
  // The policy version the profile was consented under, read before the cascade removes it.
  const versions = new Map<string, string>()
  return {
    async beforeDelete (user: { id: string }): Promise<void> {
      const { rows } = await pool.query<{ consent_version: string | null }>('SELECT consent_version FROM profile WHERE user_id = $1', [user.id])
      versions.set(user.id, rows[0]?.consent_version ?? NO_CONSENT_VERSION)
    },
    async afterDelete (user: { id: string }): Promise<void> {
      const version = versions.get(user.id) ?? NO_CONSENT_VERSION
      versions.delete(user.id)
      await pool.query('INSERT INTO consent_log (user_id, action, policy_version) VALUES ($1, $2, $3)', [user.id, 'erased', version])
    }
  }
}
