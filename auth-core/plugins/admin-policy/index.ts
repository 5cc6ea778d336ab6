import { APIError, createAuthMiddleware, getSessionFromCtx, isAPIError } from 'better-auth/api'
import type { BetterAuthPlugin } from 'better-auth'
import type { Pool } from '../../../shared/db.ts'

export interface AdminPolicyOptions {
  pool: Pool
  /** `ADMIN_REQUIRE_2FA`: admin endpoints refused to an admin who has not turned two-factor sign-in on. */
  require2fa: boolean
  /** `ADMIN_IMPERSONATION`: better-auth's impersonation endpoints; refused unless on. */
  impersonation: boolean
}

export const IMPERSONATION_PATHS: ReadonlySet<string> = new Set(['/admin/impersonate-user', '/admin/stop-impersonating'])
// Read-only admin endpoints are not audited: they change nothing.
const READ_ONLY_PATHS: ReadonlySet<string> = new Set(['/admin/list-users', '/admin/get-user', '/admin/list-user-sessions', '/admin/has-permission'])
/** What of a request body the audit log may keep: never a password or a token. */
const AUDITED_FIELDS = ['role', 'banReason', 'banExpiresIn', 'email', 'name'] as const

type HookContext = Parameters<Parameters<typeof createAuthMiddleware>[0]>[0]

const isAdminPath = (ctx: { path?: string }): boolean => ctx.path?.startsWith('/admin/') === true

/** The caller's address as the gateway resolved it (it replaces any client-sent value). */
function clientIp (ctx: HookContext): string | null {
  const forwarded = ctx.request?.headers.get('x-forwarded-for') ?? ctx.headers?.get('x-forwarded-for') ?? null
  return forwarded === null ? null : forwarded.split(',')[0].trim() || null
}

function auditedDetails (body: unknown): Record<string, unknown> {
  const details: Record<string, unknown> = {}
  if (body === null || typeof body !== 'object') return details
  for (const field of AUDITED_FIELDS) {
    const value = (body as Record<string, unknown>)[field]
    if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') details[field] = value
  }
  if (typeof (body as { data?: unknown }).data === 'object') details.fields = Object.keys((body as { data: object }).data).filter((key) => !/password|token|secret/i.test(key))
  return details
}

/**
 * What better-auth's admin plugin does not decide itself: two-factor sign-in for admins, impersonation
 * off unless configured, and the audit log (`admin_audit`: who, what, whom, when, from where; never a
 * password or token). The gateway refuses `/auth/admin/*` to anyone without `role:admin` before it
 * gets here; the admin plugin checks the role again.
 */
export function adminPolicy (options: AdminPolicyOptions) {
  return {
    id: 'admin-policy',
    hooks: {
      before: [{
        matcher: isAdminPath,
        handler: createAuthMiddleware(async (ctx) => {
          if (IMPERSONATION_PATHS.has(ctx.path) && !options.impersonation) {
            throw new APIError('FORBIDDEN', { code: 'IMPERSONATION_DISABLED', message: 'Impersonation is turned off (ADMIN_IMPERSONATION)' })
          }
          if (!options.require2fa) return
          const session = await getSessionFromCtx(ctx)
          // No session: the admin plugin answers 401 itself.
          if (session !== null && (session.user as { twoFactorEnabled?: unknown }).twoFactorEnabled !== true) {
            throw new APIError('FORBIDDEN', { code: 'TWO_FACTOR_REQUIRED', message: 'Turn on two-factor sign-in to use the admin routes (ADMIN_REQUIRE_2FA)' })
          }
        })
      }],
      after: [{
        matcher: (ctx: { path?: string }) => isAdminPath(ctx) && !READ_ONLY_PATHS.has(ctx.path ?? ''),
        handler: createAuthMiddleware(async (ctx) => {
          if (isAPIError(ctx.context.returned)) return
          const session = ctx.context.session ?? await getSessionFromCtx(ctx)
          if (session === null) return
          const body = (ctx.body ?? {}) as Record<string, unknown>
          const target = typeof body.userId === 'string' ? body.userId : null
          const action = ctx.path.slice('/admin/'.length)
          await options.pool.query(
            'INSERT INTO admin_audit (actor_id, action, target_user_id, ip, details) VALUES ($1, $2, $3, $4, $5)',
            [session.user.id, action, target, clientIp(ctx), JSON.stringify(auditedDetails(body))]
          )
          if (IMPERSONATION_PATHS.has(ctx.path)) ctx.context.logger.warn(`admin ${session.user.id} ${action} ${target ?? ''}`.trim())
        })
      }]
    }
  } satisfies BetterAuthPlugin
}
