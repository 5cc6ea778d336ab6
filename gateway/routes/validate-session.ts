import type { FastifyInstance } from 'fastify'
import { userOfToken } from '../../shared/jwt.ts'
import type { VerifiedToken } from '../../shared/jwt.ts'
import type { SessionUser } from '../identity/identity-resolver.ts'
import { VALIDATE_SESSION_PATH } from '../route-paths.ts'

export interface ValidateSessionResponse {
  user: SessionUser | null
  /** The better-auth session for a cookie; `null` for a bearer token, which has no server session. */
  session?: Record<string, unknown> | null
}

/**
 * `GET /api/validate-session`: who a cookie or bearer token belongs to, for Python backends. A bearer
 * is described as auth-core's validate-session describes it (one `userOfToken`), so both answer the same.
 */
export default async function validateSessionRoutes (app: FastifyInstance): Promise<void> {
  app.get(VALIDATE_SESSION_PATH, {
    config: { identity: 'optional' },
    schema: {
      summary: 'Who a cookie or bearer token belongs to',
      description: '`{ user, session }` for a session cookie, `{ user, session: null }` for a client token, `{ user: null }` for neither or a bad one; 503 when auth-core or Postgres cannot say (docs/tokens.md).',
      tags: ['Identity']
    }
  }, async (request, reply): Promise<ValidateSessionResponse> => {
    reply.header('cache-control', 'no-store')
    // The policy ignores a failed look-up on a public route; here "auth-core or the database is down"
    // must not read as "signed out" to the backend asking. A bad token is simply no user.
    const failure = request.identityFailure
    if (failure !== null && failure.statusCode !== undefined && failure.statusCode >= 500) throw failure
    const identity = request.identity
    if (identity === null) return { user: null }
    if (identity.via === 'bearer') return { user: userOfToken(identity.user as unknown as VerifiedToken), session: null }
    return { user: identity.user, session: identity.session }
  })

}
