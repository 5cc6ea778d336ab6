import { APIError, createAuthMiddleware, getSessionFromCtx, isAPIError } from 'better-auth/api'
import type { BetterAuthPlugin } from 'better-auth'

/** better-auth's cookie of a sign-in waiting for its second factor (the two-factor plugin's name). */
const TWO_FACTOR_COOKIE = 'two_factor'
const VERIFY_TOTP = '/two-factor/verify-totp'
/** A TOTP code is accepted for its 30 s step and one step either side: remembered a little longer. */
const USED_FOR_MS = 120_000
const MAX_REMEMBERED = 10_000

type HookContext = Parameters<Parameters<typeof createAuthMiddleware>[0]>[0]

/** The user a TOTP code is for: the signed-in enrolling user, or the one whose sign-in waits for it. */
async function userOf (ctx: HookContext): Promise<string | null> {
  const session = await getSessionFromCtx(ctx)
  if (session !== null) return session.user.id
  const cookie = ctx.context.createAuthCookie(TWO_FACTOR_COOKIE)
  const identifier = await ctx.getSignedCookie(cookie.name, ctx.context.secret)
  if (typeof identifier !== 'string' || identifier === '') return null
  return (await ctx.context.internalAdapter.findVerificationValue(identifier))?.value ?? null
}

/**
 * One TOTP code, one use: better-auth's two-factor plugin accepts a valid code as often as it is sent
 * within its time window, so a code read over a shoulder or from a phished page could sign in a second
 * time. A code is reserved for its user before it is checked (concurrent replays lose), released if
 * the check fails, and refused afterwards for the rest of its window. Kept in auth-core's memory:
 * auth-core is one process.
 */
export function totpReplay (clock: () => number = Date.now) {
  const used = new Map<string, number>()
  const reserved = new WeakMap<object, string>()
  const forgetExpired = (now: number): void => {
    for (const [key, until] of used) {
      if (until > now && used.size <= MAX_REMEMBERED) break
      used.delete(key)
    }
  }
  return {
    id: 'totp-replay',
    hooks: {
      before: [{
        matcher: (ctx: { path?: string }) => ctx.path === VERIFY_TOTP,
        handler: createAuthMiddleware(async (ctx) => {
          const code = (ctx.body as { code?: unknown } | undefined)?.code
          if (typeof code !== 'string') return
          const userId = await userOf(ctx)
          if (userId === null) return
          const now = clock()
          forgetExpired(now)
          const key = `${userId}:${code}`
          if ((used.get(key) ?? 0) > now) throw new APIError('UNAUTHORIZED', { code: 'INVALID_CODE', message: 'Invalid code' })
          used.delete(key)
          used.set(key, now + USED_FOR_MS)
          reserved.set(ctx.context, key)
        })
      }],
      after: [{
        matcher: (ctx: { path?: string }) => ctx.path === VERIFY_TOTP,
        handler: createAuthMiddleware(async (ctx) => {
          const key = reserved.get(ctx.context)
          if (key === undefined) return
          reserved.delete(ctx.context)
          // A wrong code was never used: the right one may still come.
          if (isAPIError(ctx.context.returned)) used.delete(key)
        })
      }]
    }
  } satisfies BetterAuthPlugin
}
