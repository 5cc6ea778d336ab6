import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { routedPath } from '../stages/normalise.ts'

/** better-auth endpoints (as routed, after aliases) whose success changes who is signed in. */
export const SIGN_OUT_PATH = '/auth/sign-out'
export const REVOKE_ALL_PATH = '/auth/revoke-sessions'
const REVOKE_ONE_PATH = '/auth/revoke-session'
// auth-core names the user of this one itself (it revokes the user's tokens too): see the auth proxy.
const REVOKE_OTHERS_PATH = '/auth/revoke-other-sessions'
const SIGN_IN = /^\/auth\/sign-in\//
const SIGN_UP = /^\/auth\/sign-up\//
const BAN_PATH = '/auth/admin/ban-user'

type SessionEvent = 'sign_in' | 'sign_up' | 'sign_out' | 'revoke_sessions' | 'revoke_session' | 'ban_user'

function eventOf (method: string, path: string): SessionEvent | null {
  if (method !== 'POST') return null
  if (path === SIGN_OUT_PATH) return 'sign_out'
  if (path === REVOKE_ALL_PATH) return 'revoke_sessions'
  if (path === REVOKE_ONE_PATH || path === REVOKE_OTHERS_PATH) return 'revoke_session'
  if (SIGN_IN.test(path)) return 'sign_in'
  if (SIGN_UP.test(path)) return 'sign_up'
  // auth-core revokes the banned user's sessions and tokens itself (see the auth proxy).
  if (path === BAN_PATH) return 'ban_user'
  return null
}

/** The request as auth-core sees it: better-auth authenticates these calls by the cookie alone. */
function cookieOnly (request: FastifyRequest): FastifyRequest {
  const view = Object.create(request) as FastifyRequest
  Object.defineProperty(view, 'headers', { value: { ...request.headers, authorization: undefined } })
  return view
}

/**
 * Keeps the gateway's session cache in step with better-auth: a sign-out evicts the cached session,
 * revoking one session evicts the user's. (Revocations of every token of a user are announced by
 * auth-core itself: see the auth proxy.) Runs in `onSend`, before the answer leaves, so the caller's
 * next request already sees the change, on this replica and (with Redis) on every other. Also logs
 * and counts sign-in, sign-up, sign-out, revocation and ban events (never credentials).
 */
async function sessionEvents (app: FastifyInstance): Promise<void> {
  // Classified once, in onRequest; onSend only looks the request up.
  const pending = new WeakMap<FastifyRequest, { event: SessionEvent, userId?: string }>()

  app.addHook('onRequest', function classifySessionEvent (request, _reply, done) {
    const path = routedPath(request)
    const event = eventOf(request.method, path)
    if (event === null) return done()
    pending.set(request, { event })
    if (path !== REVOKE_ONE_PATH) return done()
    // Resolved before proxying: afterwards the session no longer exists to say whose it was.
    app.identities.resolve(cookieOnly(request)).then(({ identity }) => {
      if (identity !== null) pending.set(request, { event, userId: identity.userId })
      done()
    }, done)
  })

  app.addHook('onSend', function settleSessionEvent (request, reply, payload, done) {
    const entry = pending.get(request)
    // auth-core revoked the user's tokens (the auth proxy evicted): other replicas hear it first.
    if (entry === undefined) {
      if (request.tokensRevokedFor === null) return done(null, payload)
      return announcedThen(done, payload)
    }
    const { event } = entry
    const userId = entry.userId ?? request.tokensRevokedFor ?? undefined
    const ok = reply.statusCode === 200
    app.metrics?.authEvents.inc({ event, outcome: ok ? 'success' : 'failure' })
    if (ok) {
      if (event === 'sign_out') app.identities.evict(request.headers.cookie)
      if (event === 'revoke_session' && userId !== undefined) app.identities.evictUser(userId)
    }
    request.log.info({ event, ok, status: reply.statusCode, ...(userId === undefined ? {} : { userId }) }, ok ? `${event} succeeded` : `${event} refused`)
    if (ok && event !== 'sign_in' && event !== 'sign_up') return announcedThen(done, payload)
    done(null, payload)
  })

  /** The answer leaves once every replica was told (or Redis timed out): the caller's next request, on any replica, is already refused. */
  function announcedThen (done: (err: null, payload: unknown) => void, payload: unknown): void {
    app.identities.announced().then(() => { done(null, payload) }, () => { done(null, payload) })
  }
}

export default fp(sessionEvents, { name: 'session-events', dependencies: ['identity'] })
