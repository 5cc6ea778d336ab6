import Fastify from 'fastify'
import { createAuth } from '../../auth-core/auth.ts'
import { connectSessionStorage } from '../../auth-core/session-storage.ts'
import type { Pool } from '../../shared/db.ts'
import type { Config } from '../../shared/config.ts'
import { revokeTokensNow } from '../../shared/token-revocation.ts'

// A command prints its own outcome; Fastify's logger with logging off.
const silentLog = Fastify({ logger: false }).log

interface UserRow {
  id: string
  email: string
  role: string | null
  banned: boolean | null
  two_factor_enabled: boolean | null
}

/**
 * Gives a user a role (`admin` for the first admin) without SQL, through better-auth's own adapter,
 * so the Redis copies of sessions see it too. The user's sessions and bearer tokens end (they carry
 * the old role): they sign in again with the new one. Running gateways forget their cached sessions
 * of the user within `SESSION_CACHE_TTL`.
 */
export async function setRole (config: Readonly<Config>, pool: Pool, email: string, role: string): Promise<void> {
  const { rows } = await pool.query<UserRow>('SELECT id FROM "user" WHERE lower(email) = lower($1)', [email])
  if (rows.length === 0) {
    process.stderr.write(`no user with the address ${email}\n`)
    process.exitCode = 1
    return
  }
  const storage = config.redisUrl === undefined ? undefined : await connectSessionStorage(config.redisUrl, silentLog)
  try {
    const auth = createAuth(config, pool, { storage })
    const context = await auth.$context
    const [{ id }] = rows
    await context.internalAdapter.updateUser(id, { role })
    await context.internalAdapter.deleteUserSessions(id)
    await revokeTokensNow(pool, id)
    process.stdout.write(`${email} now has the role ${role}; their sessions and tokens ended, so they sign in again\n`)
  } finally {
    storage?.close()
  }
}

export async function list (pool: Pool): Promise<void> {
  const { rows } = await pool.query<UserRow>('SELECT id, email, role, banned, "twoFactorEnabled" AS two_factor_enabled FROM "user" WHERE role IS DISTINCT FROM $1 ORDER BY email', ['user'])
  if (rows.length === 0) process.stdout.write('no user has a role other than user\n')
  for (const row of rows) process.stdout.write(`${row.email}  ${row.role ?? '(none)'}  ${row.two_factor_enabled === true ? '2fa' : 'no 2fa'}${row.banned === true ? '  banned' : ''}\n`)
}


