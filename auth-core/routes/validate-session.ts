import type { FastifyInstance } from 'fastify'
import type { Pool } from '../../shared/db.ts'
import { DatabaseUnavailableError, isDatabaseUnavailable } from '../../shared/errors.ts'
import { bearerToken, ClientTokenVerifier, userOfToken } from '../../shared/jwt.ts'
import type { KeyRing } from '../../shared/signing-keys.ts'
import type { SchemaRecovery } from '../schema-recovery.ts'
import { generationOf, isLoginLive, isRevoked, loginOf, readTokenGeneration } from '../../shared/token-revocation.ts'

export const VALIDATE_SESSION_PATH = '/api/validate-session'

export interface ValidateSessionOptions {
  pool: Pool
  /** `JWT_SECRET`: the key of the tokens `GET /auth/jwt` issues. */
  jwtSecret: string
  /** The published keys, when client tokens are EdDSA (`JWT_ALG=EdDSA`). */
  keyRing: KeyRing | null
  /** better-auth's schema verdict, looked at again after a migration. */
  recovery: SchemaRecovery
}

export interface ValidateSessionResponse {
  user: Record<string, unknown> | null
  /** The better-auth session for a cookie; `null` for a bearer token, which has no server session. */
  session?: Record<string, unknown> | null
}

function validateOptions (options: ValidateSessionOptions): void {
  if (options.pool === undefined || options.pool === null) throw new Error('validate-session: pool is required')
  if (typeof options.jwtSecret !== 'string' || options.jwtSecret === '') throw new Error('validate-session: jwtSecret must be a non-empty string')
}

/**
 * `GET /api/validate-session` on auth-core, for backends on the internal network: the caller of a
 * better-auth session cookie or of a bearer token from `/auth/jwt`, `{ user: null }` otherwise.
 * Bearer tokens are decided as the gateway decides them: only client tokens, refused once issued
 * before the user's last revocation or once the user is deleted.
 */
export default async function validateSessionRoutes (app: FastifyInstance, options: ValidateSessionOptions): Promise<void> {
  validateOptions(options)
  const verifier = new ClientTokenVerifier(options.jwtSecret, options.keyRing)

  app.get(VALIDATE_SESSION_PATH, async (request, reply): Promise<ValidateSessionResponse> => {
    reply.header('cache-control', 'no-store')
    const authorization = request.headers.authorization
    if (authorization !== undefined) {
      const token = bearerToken(authorization)
      if (token === null) return { user: null }
      let payload
      try {
        payload = await verifier.verify(token)
      } catch (err) {
        // An EdDSA token naming a key not loaded yet is checked against Postgres: when that cannot
        // be read, the answer is not known, and "no user" would read as signed out.
        if (isDatabaseUnavailable(err)) throw new DatabaseUnavailableError({ cause: err })
        return { user: null }
      }
      // A deleted user's token vouches for no one; the answer is the gateway's, field for field.
      if (isRevoked(generationOf(payload), await readTokenGeneration(options.pool, payload.sub))) return { user: null }
      // A token client's access token passes while its login does (not logged out, not reused).
      const login = loginOf(payload)
      if (login !== null && !await isLoginLive(options.pool, login)) return { user: null }
      return { user: userOfToken(payload), session: null }
    }
    const headers = new Headers()
    if (request.headers.cookie !== undefined) headers.set('cookie', request.headers.cookie)
    const session = await options.recovery.run(async () => app.auth.api.getSession({ headers }))
    if (session === null) return { user: null }
    return { user: { ...session.user }, session: { ...session.session } }
  })
}
