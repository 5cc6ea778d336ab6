import type { FastifyInstance } from 'fastify'
import { userOfToken } from '../../shared/jwt.ts'
import type { VerifiedToken } from '../../shared/jwt.ts'
import { callerOf } from '../identity/identity-resolver.ts'
import type { Identity, SessionUser } from '../identity/identity-resolver.ts'
import { ME_ROUTE, VALIDATE_SESSION_PATH } from '../route-paths.ts'

export interface ValidateSessionResponse {
  user: SessionUser | null
  /** The better-auth session for a cookie; `null` for a bearer token, which has no server session. */
  session?: Record<string, unknown> | null
}

/**
 * A caller as validate-session describes it. A bearer is described as auth-core's validate-session
 * describes it (one `userOfToken`), so both answer the same.
 */
function described (identity: Identity): ValidateSessionResponse {
  if (identity.via === 'bearer') return { user: userOfToken(identity.user as unknown as VerifiedToken), session: null }
  // An API key, like a bearer token, names no server session.
  return { user: identity.user, session: identity.session }
}

/**
 * `GET /api/validate-session`: who a cookie or bearer token belongs to, for Python backends;
 * `GET /auth/me`: the same for a client, which gets a 401 when it is no one.
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
    return identity === null ? { user: null } : described(identity)
  })

  // The access policy (`session`) answers 401 to no caller, a bad or revoked token, a dead session.
  app.get(ME_ROUTE, {
    schema: {
      summary: 'The signed-in caller',
      description: '`{ user, session }` for a session cookie, `{ user, session: null }` for a client token (`Authorization: Bearer`); 401 for neither, unlike `/api/validate-session` (docs/tokens.md).',
      tags: ['Identity']
    }
  }, async (request, reply): Promise<ValidateSessionResponse> => {
    reply.header('cache-control', 'no-store')
    return described(callerOf(request))
  })

}
