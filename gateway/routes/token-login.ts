import { randomUUID } from 'node:crypto'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { IncomingHttpHeaders } from 'node:http'
import { bearerToken } from '../../shared/jwt.ts'
import { GENERATION_CLAIM, LOGIN_CLAIM, loginOf } from '../../shared/token-revocation.ts'
import { allowedHeaders, AUTH_CORE_REQUEST_HEADERS } from '../proxy/forwarded-headers.ts'
import { refusedRedirect, redirectValues } from '../guards/redirect-targets.ts'
import { customClaims } from '../identity/identity-resolver.ts'
import type { SessionUser } from '../identity/identity-resolver.ts'
import { ACCESS_TOKEN_TTL_SECONDS, LoginTokens, REFRESH_TOKEN_PATTERN, REFRESH_TOKEN_TTL_SECONDS } from '../identity/login-tokens.ts'
import type { Login } from '../identity/login-tokens.ts'
import { BadGatewayError, BadRedirectError, InvalidRefreshTokenError, InvalidTokenError, LoginTokenRequiredError, TwoFactorCodeRequiredError, upstreamError } from '../errors.ts'
import { sendError } from '../../shared/errors.ts'
import { AUTH_CORE_PREFIX, LOGIN_ROUTE, LOGOUT_ROUTE, REFRESH_ROUTE, TOKEN_SIGNUP_ROUTE } from '../route-paths.ts'
import { forwardedHeaders } from './auth-proxy.ts'
import type { UserField } from '../../shared/config.ts'

export interface TokenLoginOptions {
  publicUrl: string
  allowedOrigins: readonly string[]
  userFields: readonly UserField[]
}

/** What a token client gets from login, sign-up and refresh. */
export interface LoginResponse {
  /** The access token, for `Authorization: Bearer`; minutes of life. */
  token: string
  expiresAt: string
  /** Single use: exchanged at `POST /auth/token/refresh` for the next pair. */
  refreshToken: string
  refreshTokenExpiresAt: string
  user: { id: string, email: string, name: string, [claim: string]: unknown }
}

const CREDENTIALS_SCHEMA = {
  type: 'object',
  required: ['email', 'password'],
  additionalProperties: false,
  properties: {
    email: { type: 'string', minLength: 1, maxLength: 254 },
    password: { type: 'string', minLength: 1, maxLength: 1024 },
    /** A TOTP code, for accounts with two-factor sign-in on. */
    code: { type: 'string', pattern: '^[0-9]{6,8}$' }
  }
} as const
const REFRESH_SCHEMA = {
  type: 'object',
  required: ['refreshToken'],
  additionalProperties: false,
  properties: { refreshToken: { type: 'string', pattern: REFRESH_TOKEN_PATTERN } }
} as const
// Sign-up's own fields are better-auth's to check (and `AUTH_USER_FIELDS`); only the shape is checked here.
const SIGNUP_SCHEMA = {
  type: 'object',
  required: ['email', 'password', 'name'],
  properties: { email: { type: 'string' }, password: { type: 'string' }, name: { type: 'string' } }
} as const
const USER_SCHEMA = { type: 'object', required: ['id', 'email', 'name'], additionalProperties: true, properties: { id: { type: 'string' }, email: { type: 'string' }, name: { type: 'string' } } } as const
const LOGIN_RESPONSE = {
  description: 'An access token and a refresh token',
  type: 'object',
  required: ['token', 'expiresAt', 'refreshToken', 'refreshTokenExpiresAt', 'user'],
  properties: {
    token: { type: 'string' },
    expiresAt: { type: 'string', format: 'date-time' },
    refreshToken: { type: 'string' },
    refreshTokenExpiresAt: { type: 'string', format: 'date-time' },
    user: USER_SCHEMA
  }
} as const

interface AuthCoreAnswer {
  status: number
  json: unknown
  /** `name=value` of each cookie the answer set. */
  cookies: string[]
}

/** The `name=value` pairs of `Set-Cookie` lines. */
function cookiePairs (setCookie: string | string[] | undefined): string[] {
  if (setCookie === undefined) return []
  return (Array.isArray(setCookie) ? setCookie : [setCookie]).map((line) => line.split(';', 1)[0].trim()).filter((pair) => pair.includes('='))
}

function isUser (value: unknown): value is SessionUser {
  const user = value as Partial<SessionUser> | null
  return user !== null && typeof user === 'object' && typeof user.id === 'string' && typeof user.email === 'string'
}

/**
 * Token clients, for scripts, notebooks and apps without a cookie jar: `POST /auth/login` (and
 * `POST /auth/signup` from a client that sends no `Origin`) answer an access token and a refresh
 * token instead of a session cookie; `POST /auth/token/refresh` rotates the refresh token;
 * `POST /auth/logout` ends one login. The password is checked by better-auth's own sign-in (bans,
 * e-mail verification and two-factor sign-in included); the session it makes is signed out at once,
 * so a token login leaves no cookie session behind. (docs/tokens.md)
 */
export default async function tokenLoginRoutes (app: FastifyInstance, options: TokenLoginOptions): Promise<void> {
  const logins = new LoginTokens(app.pg)
  const toAuthCore = forwardedHeaders(options.publicUrl)
  const allowedOrigins = new Set(options.allowedOrigins)
  const ownOrigin = new URL(options.publicUrl).origin

  const authCore = async (request: FastifyRequest, path: string, body: unknown, cookies: readonly string[] = []): Promise<AuthCoreAnswer> => {
    // Never the client's cookies: the login is the credentials', not a session's the client holds.
    // The call is the gateway's own, with no cookie of the client's to protect: it comes from PUBLIC_URL.
    const { cookie: _cookie, origin: _origin, referer: _referer, ...client } = allowedHeaders(request.headers, AUTH_CORE_REQUEST_HEADERS)
    const headers: IncomingHttpHeaders = { ...client, origin: ownOrigin, accept: 'application/json', 'content-type': 'application/json', ...(cookies.length === 0 ? {} : { cookie: cookies.join('; ') }) }
    try {
      const response = await app.authCore.request({ method: 'POST', path: `${AUTH_CORE_PREFIX}${path}`, headers: toAuthCore(request, headers), body: JSON.stringify(body) })
      const text = await response.body.text()
      let json: unknown = null
      try {
        json = text === '' ? null : JSON.parse(text)
      } catch {
        if (response.statusCode < 500) throw new BadGatewayError('auth')
      }
      return { status: response.statusCode, json, cookies: cookiePairs(response.headers['set-cookie']) }
    } catch (err) {
      if (err instanceof BadGatewayError) throw err
      throw upstreamError(err, 'auth')
    }
  }

  /** auth-core's refusal (its own `{ error, message }`), passed on; its 5xx as the gateway's. */
  const refusal = (reply: FastifyReply, answer: AuthCoreAnswer): FastifyReply => {
    if (answer.status >= 500) throw upstreamError(new Error(`auth-core answered ${answer.status}`), 'auth')
    const body = answer.json as { error?: unknown, message?: unknown } | null
    if (body !== null && typeof body.error === 'string' && typeof body.message === 'string') return sendError(reply, answer.status, { error: body.error, message: body.message })
    return sendError(reply, answer.status, { error: 'auth_error', message: 'The authentication service refused the request' })
  }

  /** The session better-auth made is not the client's: signed out at once (it would expire unused otherwise). */
  const dropSession = async (request: FastifyRequest, cookies: readonly string[]): Promise<void> => {
    try {
      const answer = await authCore(request, '/sign-out', {}, cookies)
      if (answer.status !== 200) request.log.warn({ status: answer.status }, 'the session of a token login could not be signed out')
    } catch (err) {
      request.log.warn({ err }, 'the session of a token login could not be signed out')
    }
  }

  /** The access token of a login, with the user's claims as they are now. */
  const tokensOf = async (login: Login, user: SessionUser): Promise<LoginResponse> => {
    const claims = customClaims(user, options.userFields)
    const { token, expiresAt } = await app.clientTokens.signer.sign(
      login.userId,
      // `jti`: two tokens of one login are never the same string, even within a second.
      { email: user.email, name: user.name, ...claims, [GENERATION_CLAIM]: login.generation, [LOGIN_CLAIM]: login.familyId, jti: randomUUID() },
      ACCESS_TOKEN_TTL_SECONDS
    )
    return {
      token,
      expiresAt: expiresAt.toISOString(),
      refreshToken: login.refresh.token,
      refreshTokenExpiresAt: login.refresh.expiresAt.toISOString(),
      user: { id: login.userId, email: user.email, name: user.name, ...claims }
    }
  }

  /** Turns better-auth's signed-in answer into a token login; null when the user is gone since. */
  const begin = async (request: FastifyRequest, answer: AuthCoreAnswer): Promise<LoginResponse | null> => {
    const user = (answer.json as { user?: unknown } | null)?.user
    if (!isUser(user)) throw new BadGatewayError('auth')
    await dropSession(request, answer.cookies)
    const login = await logins.begin(user.id)
    return login === null ? null : tokensOf(login, user)
  }

  const issued = (request: FastifyRequest, reply: FastifyReply, event: string, response: LoginResponse | null): LoginResponse => {
    if (response === null) throw new InvalidRefreshTokenError()
    reply.header('cache-control', 'no-store')
    app.metrics?.authEvents.inc({ event, outcome: 'success' })
    request.log.info({ event, userId: response.user.id }, `${event} succeeded`)
    return response
  }

  const failed = (request: FastifyRequest, event: string, status: number): void => {
    app.metrics?.authEvents.inc({ event, outcome: 'failure' })
    request.log.info({ event, ok: false, status }, `${event} refused`)
  }

  const tags = ['Tokens']
  app.post<{ Body: { email: string, password: string, code?: string } }>(LOGIN_ROUTE, {
    schema: {
      summary: 'Sign in for a token client',
      description: 'Email and password (and `code`, a TOTP code, when two-factor sign-in is on) → an access token (15 minutes) and a single-use refresh token (30 days); no cookie. In the sign-in rate-limit group (docs/tokens.md).',
      tags,
      body: CREDENTIALS_SCHEMA,
      response: { 200: LOGIN_RESPONSE }
    }
  }, async (request, reply) => {
    const { email, password, code } = request.body
    let answer = await authCore(request, '/sign-in/email', { email, password })
    if (answer.status === 200 && (answer.json as { twoFactorRedirect?: unknown } | null)?.twoFactorRedirect === true) {
      if (code === undefined) {
        failed(request, 'login', 401)
        throw new TwoFactorCodeRequiredError()
      }
      answer = await authCore(request, '/two-factor/verify-totp', { code }, answer.cookies)
    }
    if (answer.status !== 200) {
      failed(request, 'login', answer.status)
      return refusal(reply, answer)
    }
    return issued(request, reply, 'login', await begin(request, answer))
  })

  // Reached only without an `Origin` header: with one, `/auth/signup` is the cookie alias (stages/normalise.ts).
  app.post<{ Body: Record<string, unknown> }>(TOKEN_SIGNUP_ROUTE, {
    schema: {
      summary: 'Sign up for a token client (a request without `Origin`)',
      description: 'better-auth\'s sign-up (`email`, `password`, `name`, `AUTH_USER_FIELDS`) answering tokens as `/auth/login` does; `{ user, emailVerificationRequired: true }` when the address must be verified first. A request with an `Origin` header (every browser\'s) is the cookie sign-up instead (docs/tokens.md).',
      tags,
      body: SIGNUP_SCHEMA
    }
  }, async (request, reply) => {
    const refused = refusedRedirect(redirectValues(request.body), options.publicUrl, allowedOrigins)
    if (refused !== undefined) throw new BadRedirectError()
    const answer = await authCore(request, '/sign-up/email', request.body)
    if (answer.status !== 200) {
      failed(request, 'sign_up', answer.status)
      return refusal(reply, answer)
    }
    const body = answer.json as { token?: unknown, user?: unknown } | null
    // REQUIRE_EMAIL_VERIFICATION: no session until the link is followed; the client logs in then.
    if (body?.token === null && isUser(body.user)) {
      app.metrics?.authEvents.inc({ event: 'sign_up', outcome: 'success' })
      request.log.info({ event: 'sign_up', userId: body.user.id }, 'sign_up succeeded, verification pending')
      reply.header('cache-control', 'no-store')
      return { user: { id: body.user.id, email: body.user.email, name: body.user.name }, emailVerificationRequired: true }
    }
    return issued(request, reply, 'sign_up', await begin(request, answer))
  })

  app.post<{ Body: { refreshToken: string } }>(REFRESH_ROUTE, {
    schema: {
      summary: 'The next access and refresh token',
      description: 'Single use: the refresh token presented dies; presenting a used one again ends the whole login (its newest tokens too), as a stolen token would be used (docs/tokens.md).',
      tags,
      body: REFRESH_SCHEMA,
      response: { 200: LOGIN_RESPONSE }
    }
  }, async (request, reply) => {
    const rotated = await logins.rotate(request.body.refreshToken)
    if ('refused' in rotated) {
      failed(request, 'token_refresh', 401)
      if (rotated.familyId !== undefined && (rotated.refused === 'reuse' || rotated.refused === 'revoked')) {
        // Every replica refuses the login's access tokens before the answer leaves.
        await app.identities.evictLogin(rotated.familyId)
        if (rotated.refused === 'reuse') request.log.warn({ event: 'refresh_token_reuse', userId: rotated.userId }, 'a used refresh token was presented again: the login is ended')
      }
      throw new InvalidRefreshTokenError()
    }
    const user = await currentUser(app, rotated.userId)
    return issued(request, reply, 'token_refresh', user === null ? null : await tokensOf(rotated, user))
  })

  app.post<{ Body: { refreshToken?: string } }>(LOGOUT_ROUTE, {
    schema: {
      summary: 'End one token login',
      description: 'With the login\'s access token (`Authorization: Bearer`, even an expired one) or its refresh token (`{ refreshToken }`), or both: that login\'s access and refresh tokens are refused at once, on every replica. Other logins and sessions of the user stay (docs/tokens.md).',
      tags,
      body: { type: 'object', additionalProperties: false, properties: { refreshToken: { type: 'string', pattern: REFRESH_TOKEN_PATTERN } } },
      response: { 204: { description: 'Logged out', type: 'null' } }
    },
    // A bearer alone needs no body: none is an empty one.
    preValidation: async (request) => { request.body ??= {} }
  }, async (request, reply) => {
    const ended = new Map<string, string>()
    const token = bearerToken(request.headers.authorization)
    if (token !== null) {
      const payload = await app.clientTokens.verifier.verify(token, { expiredFor: REFRESH_TOKEN_TTL_SECONDS }).catch(() => null)
      if (payload === null) throw new InvalidTokenError()
      const login = loginOf(payload)
      if (login === null) throw new LoginTokenRequiredError()
      if (await logins.end(login)) ended.set(login, payload.sub)
    }
    const refreshToken = request.body.refreshToken
    if (refreshToken !== undefined) {
      const login = await logins.endByRefreshToken(refreshToken)
      if (login !== null) ended.set(login.familyId, login.userId)
    }
    if (ended.size === 0) {
      failed(request, 'logout', 401)
      throw token === null ? new InvalidRefreshTokenError() : new InvalidTokenError()
    }
    await Promise.all([...ended.keys()].map(async (login) => { await app.identities.evictLogin(login) }))
    app.metrics?.authEvents.inc({ event: 'logout', outcome: 'success' })
    request.log.info({ event: 'logout', userId: [...ended.values()][0] }, 'logout succeeded')
    return reply.code(204).send()
  })
}

/** The user as the database has it now (a refreshed token carries the current name, role and fields); null once deleted. */
async function currentUser (app: FastifyInstance, userId: string): Promise<SessionUser | null> {
  const { rows } = await app.pg.query<SessionUser>('SELECT * FROM "user" WHERE id = $1', [userId])
  return rows[0] ?? null
}
