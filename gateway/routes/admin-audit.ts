import type { FastifyInstance } from 'fastify'
import { ADMIN_AUDIT_ROUTE } from '../route-paths.ts'
import { callerOf } from '../identity/identity-resolver.ts'
import { TwoFactorRequiredError } from '../errors.ts'

export interface AdminAuditOptions {
  /** `ADMIN_REQUIRE_2FA`: refused to an admin without two-factor sign-in. */
  require2fa: boolean
}

export interface AuditEntry {
  id: string
  at: string
  actorId: string
  action: string
  targetUserId: string | null
  ip: string | null
  details: Record<string, unknown>
}

const MAX_PAGE = 200
const DEFAULT_PAGE = 50

const QUERY_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    limit: { type: 'integer', minimum: 1, maximum: MAX_PAGE, default: DEFAULT_PAGE },
    // The `next` of the previous page: entries older than this id.
    before: { type: 'string', pattern: '^[1-9][0-9]{0,18}$' }
  }
} as const

const nullableString = { type: ['string', 'null'] } as const
/** `{ entries: AuditEntry[], next }`, exactly. */
const AUDIT_PAGE_SCHEMA = {
  description: 'A page of the log',
  type: 'object',
  required: ['entries', 'next'],
  properties: {
    entries: {
      type: 'array',
      items: {
        type: 'object',
        required: ['id', 'at', 'actorId', 'action', 'targetUserId', 'ip', 'details'],
        properties: {
          id: { type: 'string' },
          at: { type: 'string', format: 'date-time' },
          actorId: { type: 'string' },
          action: { type: 'string', description: 'The admin endpoint, e.g. `set-role`' },
          targetUserId: nullableString,
          ip: nullableString,
          details: { type: 'object', additionalProperties: true, description: 'What of the request the log keeps (never a password or token)' }
        }
      }
    },
    next: nullableString
  }
} as const

/**
 * `GET /api/v1/admin/audit?limit=&before=`: the admin audit log, newest first, a page at a time
 * (`next` is the `before` of the following page, `null` at the end). `role:admin` only (the access
 * policy); with `ADMIN_REQUIRE_2FA`, an admin signed in with two factors only.
 */
export default async function adminAuditRoutes (app: FastifyInstance, options: AdminAuditOptions): Promise<void> {
  app.get<{ Querystring: { limit: number, before?: string } }>(ADMIN_AUDIT_ROUTE, {
    schema: {
      summary: 'The admin audit log, newest first, a page at a time',
      description: '`next` is the `before` of the following page, `null` at the end. With `ADMIN_REQUIRE_2FA`, an admin signed in with two factors only (403 `two_factor_required`).',
      tags: ['Admin'],
      querystring: QUERY_SCHEMA,
      response: { 200: AUDIT_PAGE_SCHEMA }
    }
  }, async (request, reply) => {
    const caller = callerOf(request)
    if (options.require2fa && caller.user.twoFactorEnabled !== true) throw new TwoFactorRequiredError()
    const { limit, before } = request.query
    const { rows } = await app.pg.query<{ id: string, at: Date, actor_id: string, action: string, target_user_id: string | null, ip: string | null, details: Record<string, unknown> }>(
      `SELECT id, at, actor_id, action, target_user_id, ip, details FROM admin_audit
       WHERE ($1::bigint IS NULL OR id < $1::bigint) ORDER BY id DESC LIMIT $2`,
      [before ?? null, limit + 1]
    )
    const page = rows.slice(0, limit)
    const entries: AuditEntry[] = page.map((row) => ({ id: String(row.id), at: row.at.toISOString(), actorId: row.actor_id, action: row.action, targetUserId: row.target_user_id, ip: row.ip, details: row.details }))
    reply.header('cache-control', 'no-store')
    return { entries, next: rows.length > limit ? entries.at(-1)?.id ?? null : null }
  })
}
