import { createHmac } from 'node:crypto'
import type { Auth } from '../../auth-core/auth.ts'
import type { SeededReader } from './service-messages.ts'

/*
 * The bench's readers, made inside auth-core with its own better-auth (so with its secondary storage
 * when REDIS_URL is set): a user with a verified address, a credential account and a session each,
 * as sign-up and verification make them, but with one password hash for all, so 5,000 take seconds
 * instead of the minutes 5,000 scrypt hashes would.
 */

// Under the service's pool of 20 connections: the inserts of one reader run in sequence.
const SEED_CONCURRENCY = 16

async function inParallel (count: number, work: (index: number) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: Math.min(SEED_CONCURRENCY, count) }, async () => {
    for (let index = next++; index < count; index = next++) await work(index)
  }))
}

export async function seedReaders (auth: Auth, count: number, emailPrefix: string, password: string): Promise<SeededReader[]> {
  const context = await auth.$context
  const hash = await context.password.hash(password)
  const cookieName = context.authCookies.sessionToken.name
  const readers: SeededReader[] = new Array<SeededReader>(count)
  await inParallel(count, async (index) => {
    const user = await context.internalAdapter.createUser({ email: `${emailPrefix}${index}@example.com`, name: `Bench Reader ${index}`, emailVerified: true }, { method: 'email-password' })
    await context.internalAdapter.linkAccount({ userId: user.id, providerId: 'credential', accountId: user.id, password: hash })
    const session = await context.internalAdapter.createSession(user.id)
    // The cookie better-call's setSignedCookie writes: `token.base64(HMAC-SHA256(token, secret))`, URI-encoded.
    const signature = createHmac('sha256', context.secret).update(session.token).digest('base64')
    readers[index] = { userId: user.id, cookie: `${cookieName}=${encodeURIComponent(`${session.token}.${signature}`)}` }
  })
  return readers
}

/**
 * Deletes the seeded users with their sessions (in Postgres and in the secondary storage) and
 * accounts, and the "revoked before" marker better-auth leaves in the secondary storage for a
 * deleted user (kept for the session lifetime otherwise: 5,000 keys per run).
 */
export async function unseedReaders (auth: Auth, userIds: readonly string[]): Promise<void> {
  const context = await auth.$context
  await inParallel(userIds.length, async (index) => {
    await context.internalAdapter.deleteUser(userIds[index])
    await context.secondaryStorage?.delete(`revoked-sessions-before-${userIds[index]}`)
  })
}
