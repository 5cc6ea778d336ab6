import { createAuthMiddleware, getSessionFromCtx, isAPIError } from 'better-auth/api'
import type { BetterAuthPlugin } from 'better-auth'
import type { Pool } from '../../../shared/db.ts'
import { REVOKED_API_KEY_HEADER, REVOKED_USER_HEADER, revokeTokensNow } from '../../../shared/token-revocation.ts'

/** better-auth endpoints after whose success none of the user's earlier bearer tokens may pass. */
export const REVOKING_PATHS: ReadonlySet<string> = new Set([
  '/revoke-sessions', '/revoke-other-sessions', '/change-password', '/reset-password', '/delete-user',
  // An admin acting on a user (`userId` in the body): a ban, all sessions revoked, a new role (tokens
  // carry the role), a password set, the user removed.
  '/admin/ban-user', '/admin/revoke-user-sessions', '/admin/set-role', '/admin/set-user-password', '/admin/remove-user'
])
/**
 * Endpoints that change what a user's credentials open without touching the user's tokens: the
 * gateway only forgets what it cached (a session ended; a ban lifted, so the user's API keys open
 * again at once).
 */
const EVICTING_PATHS: ReadonlySet<string> = new Set(['/admin/revoke-user-session', '/admin/unban-user'])
/** Users that no longer exist afterwards: there is no generation to raise. */
const REMOVING_PATHS: ReadonlySet<string> = new Set(['/delete-user', '/admin/remove-user'])
/**
 * The api-key plugin's endpoints after whose success the gateway forgets what it cached of the key
 * (`keyId` in the body): deleted, or changed (disabled, renamed, a new expiry). API keys are not in
 * `REVOKING_PATHS`: a key is its own credential, like a personal access token, and outlives "sign out
 * everywhere" and a password change or reset; a ban or a deleted user (named by `REVOKED_USER_HEADER`)
 * ends it, as auth-core's verify-api-key answers no user for it.
 */
const API_KEY_CHANGING_PATHS: ReadonlySet<string> = new Set(['/api-key/delete', '/api-key/update'])

export interface TokenRevocationOptions {
  pool: Pool
}

type HookContext = Parameters<Parameters<typeof createAuthMiddleware>[0]>[0]

/** Whose tokens the request would revoke, read before the endpoint runs (afterwards the session or reset token is gone). */
async function targetUser (ctx: HookContext): Promise<string | undefined> {
  const body = (ctx.body ?? {}) as Record<string, unknown>
  if (ctx.path === '/reset-password') {
    const token = body.token ?? (ctx.query as Record<string, unknown> | undefined)?.token
    if (typeof token !== 'string' || token === '') return undefined
    const verification = await ctx.context.internalAdapter.findVerificationValue(`reset-password:${token}`)
    return verification?.value
  }
  // Changing the password keeps the other sessions (and tokens) unless asked to revoke them.
  if (ctx.path === '/change-password' && body.revokeOtherSessions !== true) return undefined
  if (ctx.path.startsWith('/admin/')) {
    if (typeof body.userId === 'string') return body.userId
    if (typeof body.sessionToken !== 'string') return undefined
    return (await ctx.context.internalAdapter.findSession(body.sessionToken))?.user.id
  }
  const session = await getSessionFromCtx(ctx)
  return session?.user.id
}

/**
 * Ties stateless bearer tokens to the account: "sign out everywhere", "sign out other devices" (a
 * token names no device, so all of them go; the caller mints a new one at once), a password change
 * that revokes the other sessions, a password reset and deleting the user all refuse the user's older tokens, in
 * the same database the gateway and validate-session read. The answer names the user in an internal
 * header, so the gateway drops its cached sessions and revocation time before the client sees it;
 * a deleted or changed API key is named the same way (`REVOKED_API_KEY_HEADER`).
 */
export function tokenRevocation (options: TokenRevocationOptions) {
  // One entry per request in flight, keyed by the endpoint context both hooks see.
  const targets = new WeakMap<object, string>()
  const matcher = (ctx: { path?: string }): boolean => ctx.path !== undefined && (REVOKING_PATHS.has(ctx.path) || EVICTING_PATHS.has(ctx.path))
  return {
    id: 'token-revocation',
    hooks: {
      before: [{
        matcher,
        handler: createAuthMiddleware(async (ctx) => {
          const userId = await targetUser(ctx)
          if (userId !== undefined) targets.set(ctx.context, userId)
        })
      }],
      after: [{
        matcher,
        handler: createAuthMiddleware(async (ctx) => {
          const userId = targets.get(ctx.context)
          targets.delete(ctx.context)
          if (userId === undefined || isAPIError(ctx.context.returned)) return
          // A deleted user's revocation row went with the user; the gateway refuses a missing user's tokens.
          if (REVOKING_PATHS.has(ctx.path) && !REMOVING_PATHS.has(ctx.path)) await revokeTokensNow(options.pool, userId)
          ctx.setHeader(REVOKED_USER_HEADER, userId)
        })
      }, {
        matcher: (ctx: { path?: string }) => ctx.path !== undefined && API_KEY_CHANGING_PATHS.has(ctx.path),
        handler: createAuthMiddleware(async (ctx) => {
          const keyId = (ctx.body as { keyId?: unknown } | undefined)?.keyId
          if (typeof keyId === 'string' && !isAPIError(ctx.context.returned)) ctx.setHeader(REVOKED_API_KEY_HEADER, keyId)
        })
      }]
    }
  } satisfies BetterAuthPlugin
}
