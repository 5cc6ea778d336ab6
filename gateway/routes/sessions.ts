import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { IncomingHttpHeaders } from 'node:http'
import { sendError } from '../../shared/errors.ts'
import { CsrfRejectedError, SessionCookieRequiredError, upstreamError } from '../errors.ts'
import { isSameSiteWrite, writeOrigins } from '../guards/csrf.ts'
import { callerOf } from '../identity/identity-resolver.ts'
import type { Identity } from '../identity/identity-resolver.ts'
import { forwardedHeaders } from './auth-proxy.ts'
import { allowedHeaders, AUTH_CORE_REQUEST_HEADERS } from '../proxy/forwarded-headers.ts'
import { AUTH_CORE_PREFIX, SESSIONS_ROUTE } from '../route-paths.ts'
import { deviceOf } from '../sessions/user-agent.ts'
// The shape the client package gives the page (one definition for both sides).
import type { SessionView } from '../../shared/client/src/client.ts'

export interface SessionsRoutesOptions {
  publicUrl: string
  allowedOrigins: readonly string[]
}

interface BetterAuthSession {
  id: string
  token: string
  createdAt: string
  updatedAt: string
  expiresAt: string
  ipAddress?: string | null
  userAgent?: string | null
}

const nullableString = { type: ['string', 'null'] } as const
/** `SessionView`, exactly. */
const SESSIONS_RESPONSE = {
  description: 'The reader\'s sessions',
  type: 'object',
  required: ['sessions'],
  properties: {
    sessions: {
      type: 'array',
      items: {
        type: 'object',
        required: ['id', 'createdAt', 'lastActiveAt', 'expiresAt', 'ipAddress', 'browser', 'os', 'current'],
        properties: {
          id: { type: 'string' },
          createdAt: { type: 'string', format: 'date-time' },
          lastActiveAt: { type: 'string', format: 'date-time' },
          expiresAt: { type: 'string', format: 'date-time' },
          ipAddress: nullableString,
          browser: nullableString,
          os: nullableString,
          current: { type: 'boolean', description: 'The session of this request' }
        }
      }
    }
  }
} as const

const ID_PARAMS = { type: 'object', required: ['id'], additionalProperties: false, properties: { id: { type: 'string', minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_-]+$' } } } as const

/**
 * `GET /api/v1/sessions` and `DELETE /api/v1/sessions/:id`: where the reader is signed in (created,
 * last active, the address and device auth-core recorded, which one is this one) and signing one
 * out. better-auth's own `list-sessions` answers every session's token to the page; these name a
 * session by its id only, so a script on the page never holds the reader's other sessions.
 * "Sign out everywhere else" is better-auth's `POST /auth/revoke-other-sessions`.
 */
export default async function sessionsRoutes (app: FastifyInstance, options: SessionsRoutesOptions): Promise<void> {
  const toAuthCore = forwardedHeaders(options.publicUrl)
  const origins = writeOrigins(options.allowedOrigins, options.publicUrl)

  const cookieCaller = (request: FastifyRequest): Identity => {
    const identity = callerOf(request)
    // Sessions are the cookie's business: a bearer token names no session.
    if (identity.via !== 'cookie') throw new SessionCookieRequiredError()
    return identity
  }
  const authCore = async (request: FastifyRequest, method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number, json: unknown }> => {
    const headers: IncomingHttpHeaders = { ...allowedHeaders(request.headers, AUTH_CORE_REQUEST_HEADERS), accept: 'application/json', ...(body === undefined ? {} : { 'content-type': 'application/json' }) }
    try {
      const response = await app.authCore.request({ method, path: `${AUTH_CORE_PREFIX}${path}`, headers: toAuthCore(request, headers), body: body === undefined ? undefined : JSON.stringify(body) })
      const text = await response.body.text()
      return { status: response.statusCode, json: text === '' ? null : JSON.parse(text) as unknown }
    } catch (err) {
      throw upstreamError(err, 'auth')
    }
  }
  const listed = async (request: FastifyRequest): Promise<BetterAuthSession[]> => {
    const { status, json } = await authCore(request, 'GET', '/list-sessions')
    if (status !== 200 || !Array.isArray(json)) throw upstreamError(new Error(`list-sessions answered ${status}`), 'auth')
    return json as BetterAuthSession[]
  }

  const tags = ['Sessions']
  app.get(SESSIONS_ROUTE, {
    schema: {
      summary: 'Where the reader is signed in',
      description: 'With the session cookie only (a bearer token: 400 `session_cookie_required`). Sessions are named by id, never by token.',
      tags,
      response: { 200: SESSIONS_RESPONSE }
    }
  }, async (request, reply) => {
    const identity = cookieCaller(request)
    const currentToken = identity.session?.token
    reply.header('cache-control', 'no-store')
    const sessions: SessionView[] = (await listed(request)).map((session) => ({
      id: session.id,
      createdAt: session.createdAt,
      lastActiveAt: session.updatedAt,
      expiresAt: session.expiresAt,
      ipAddress: session.ipAddress ?? null,
      ...deviceOf(session.userAgent),
      current: session.token === currentToken
    }))
    return { sessions }
  })

  app.delete<{ Params: { id: string } }>(`${SESSIONS_ROUTE}/:id`, {
    schema: {
      summary: 'Sign one of the reader\'s sessions out',
      description: 'With the session cookie, from an allowed origin; 404 for a session that is not the reader\'s or already ended.',
      tags,
      params: ID_PARAMS,
      response: { 204: { description: 'Signed out', type: 'null' } }
    },
    preValidation: async (request) => {
      const identity = cookieCaller(request)
      if (!isSameSiteWrite(request, identity, origins)) throw new CsrfRejectedError()
    }
  }, async (request, reply) => {
    const identity = cookieCaller(request)
    const session = (await listed(request)).find((candidate) => candidate.id === request.params.id)
    // Someone else's session id, or one that already ended: the same answer.
    if (session === undefined) return sendError(reply, 404, { error: 'not_found', message: 'No such session of yours' })
    const { status } = await authCore(request, 'POST', '/revoke-session', { token: session.token })
    if (status !== 200) throw upstreamError(new Error(`revoke-session answered ${status}`), 'auth')
    // Every replica forgets the user's cached sessions before the answer leaves.
    app.identities.evictUser(identity.userId)
    await app.identities.announced()
    request.log.info({ event: 'revoke_session', userId: identity.userId, current: session.token === identity.session?.token }, 'session revoked')
    return reply.code(204).send()
  })
}
