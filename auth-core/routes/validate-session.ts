import type { FastifyInstance } from 'fastify'
import type { Pool } from '../../shared/db.ts'
import { JwtKeys } from '../../shared/jwt.ts'

export const VALIDATE_SESSION_PATH = '/api/validate-session'

export interface ValidateSessionOptions {
  pool: Pool
  /** `JWT_SECRET`: the key of the tokens `GET /auth/jwt` issues. */
  jwtSecret: string
}

export interface ValidateSessionResponse {
  user: Record<string, unknown> | null
  /** The better-auth session for a cookie; `null` for a bearer token, which has no server session. */
  session?: Record<string, unknown> | null
}

const BEARER = /^Bearer\s+([A-Za-z0-9_\-.]+)\s*$/i

function validateOptions (options: ValidateSessionOptions): void {
  if (options.pool === undefined || options.pool === null) throw new Error('validate-session: pool is required')
  if (typeof options.jwtSecret !== 'string' || options.jwtSecret === '') throw new Error('validate-session: jwtSecret must be a non-empty string')
}

/**
 * `GET /api/validate-session` on auth-core, for backends on the internal network: the caller of a
 * better-auth session cookie or of a bearer token from `/auth/jwt`, `{ user: null }` otherwise.
 * Bearer tokens issued before the user's last "revoke all" are refused, as the gateway does.
 */
export default async function validateSessionRoutes (app: FastifyInstance, options: ValidateSessionOptions): Promise<void> {
  validateOptions(options)
  const keys = new JwtKeys(options.jwtSecret)

  const tokensValidAfter = async (userId: string): Promise<number> => {
    const { rows } = await options.pool.query<{ at: Date }>('SELECT tokens_valid_after AS at FROM token_revocation WHERE user_id = $1', [userId])
    return rows.length === 0 ? 0 : rows[0].at.getTime()
  }

  app.get(VALIDATE_SESSION_PATH, async (request, reply): Promise<ValidateSessionResponse> => {
    reply.header('cache-control', 'no-store')
    const authorization = request.headers.authorization
    if (authorization !== undefined) {
      const match = BEARER.exec(authorization)
      if (match === null) return { user: null }
      let payload
      try {
        payload = await keys.verify(match[1])
      } catch {
        return { user: null }
      }
      if (payload.iat * 1000 < await tokensValidAfter(payload.sub)) return { user: null }
      // The user as stored now: a deleted user's token vouches for no one.
      const context = await app.auth.$context
      const user = await context.internalAdapter.findUserById(payload.sub)
      return user === null ? { user: null } : { user: { ...user }, session: null }
    }
    const headers = new Headers()
    if (request.headers.cookie !== undefined) headers.set('cookie', request.headers.cookie)
    const session = await app.auth.api.getSession({ headers })
    if (session === null) return { user: null }
    return { user: { ...session.user }, session: { ...session.session } }
  })
}
