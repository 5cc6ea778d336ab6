import { createHash } from 'node:crypto'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { JwtAlg, UserField } from '../../shared/config.ts'
import { DatabaseSchemaOutdatedError, isDatabaseUnavailable } from '../../shared/errors.ts'
import { bearerToken, CLOCK_TOLERANCE_SECONDS } from '../../shared/jwt.ts'
import type { ClientTokenVerifier, TokenClaims, TokenSigner, VerifiedToken } from '../../shared/jwt.ts'
import { generationOf, isLoginLive, isRevoked, loginOf, readTokenGeneration } from '../../shared/token-revocation.ts'
import { AuthCoreUnavailableError, DatabaseUnavailableError, InvalidTokenError, UnauthorizedError } from '../errors.ts'
import { TtlCache } from '../ttl-cache.ts'
import { clientAddress } from '../client-address.ts'
import { AUTH_LOOKUP_TIMEOUT_MS } from '../proxy/upstream-client.ts'
import { VALIDATE_SESSION_PATH } from '../route-paths.ts'
import { REQUEST_ID_HEADER } from '../../shared/request-id.ts'
import type { Revocation } from './revocation-bus.ts'

export interface SessionUser {
  id: string
  email: string
  name: string
  [field: string]: unknown
}

/** Who the caller is, as the gateway vouches for it. */
export interface Identity {
  userId: string
  email: string
  name: string
  /** The better-auth user (cookie) or the token's claims (bearer). */
  user: SessionUser
  /** The better-auth session (cookie callers only). */
  session: Record<string, unknown> | null
  via: 'cookie' | 'bearer'
  /** Custom user fields for the identity token. */
  claims: TokenClaims
}

/**
 * The outcome of resolving a request: an identity, anonymous (`null`), or a failure the access
 * policy turns into 401/503 on protected routes and ignores on public ones.
 */
export type Resolution =
  | { identity: Identity, error: null }
  | { identity: null, error: null }
  | { identity: null, error: InstanceType<typeof AuthCoreUnavailableError> | InstanceType<typeof DatabaseUnavailableError> | InstanceType<typeof DatabaseSchemaOutdatedError> | InstanceType<typeof InvalidTokenError> }

/**
 * Adds claims to the identity token sent upstream (e.g. consented profile fields). Answers
 * synchronously when it can (a cached value), so a request with nothing to look up never waits;
 * returns the same object while its claims are unchanged, so the token can be reused by reference.
 */
export type ClaimProvider = (identity: Identity) => TokenClaims | Promise<TokenClaims>

/** Client tokens (`GET /auth/jwt`): how they are signed, and the only bearer tokens accepted. */
export interface ClientTokens {
  signer: TokenSigner
  verifier: ClientTokenVerifier
}

export interface IdentityResolverOptions {
  jwtSecret: string
  /** @default 'HS256' */
  jwtAlg?: JwtAlg
  /** Milliseconds a session look-up is reused. @default 5000 */
  sessionCacheTtl: number
  userFields: readonly UserField[]
}

interface VerifiedEntry {
  exp: number
  /** The token generation it was issued in. */
  generation: number
  /** The login (refresh family) of a token from `POST /auth/login`, which logout ends; null for `/auth/jwt` tokens. */
  login: string | null
  resolution: { identity: Identity, error: null }
}

const SESSION_COOKIE = /^(?:__Secure-|__Host-)?better-auth\.session_token$/
const ANONYMOUS: Resolution = { identity: null, error: null }
// Cookies auth-core did not recognise (forged, expired) are remembered apart and in few entries, so
// a flood of distinct forged cookies can neither grow memory nor push real sessions out.
const ANONYMOUS_CACHE_ENTRIES = 1000
/** Sessions, revocation generations and verified tokens each remembered, oldest dropped first. */
const SESSION_CACHE_ENTRIES = 10_000

/** The `error` of an auth-core error body (its own, in the project's format). */
function errorCodeOf (text: string): unknown {
  try {
    return (JSON.parse(text) as { error?: unknown } | null)?.error
  } catch {
    return undefined
  }
}

/** The cache key of a session cookie: its digest, so a cached entry costs 43 bytes whatever the cookie's size. */
function cookieKey (cookies: string): string {
  return createHash('sha256').update(cookies).digest('base64url')
}

/** The better-auth session cookies of a `Cookie` header, in order: the cache key and what auth-core sees. */
export function sessionCookies (cookieHeader: string | undefined): string | null {
  if (cookieHeader === undefined || cookieHeader === '') return null
  const pairs: string[] = []
  for (const part of cookieHeader.split(';')) {
    const at = part.indexOf('=')
    if (at === -1) continue
    const name = part.slice(0, at).trim()
    if (SESSION_COOKIE.test(name)) pairs.push(`${name}=${part.slice(at + 1).trim()}`)
  }
  return pairs.length === 0 ? null : pairs.join('; ')
}

/** The claims tokens carry besides the standard ones: the user's role(s) (better-auth's admin plugin) and `AUTH_USER_FIELDS`. */
export function customClaims (user: Record<string, unknown>, fields: readonly UserField[]): TokenClaims {
  const claims: TokenClaims = {}
  if (typeof user.role === 'string' && user.role !== '') claims.role = user.role
  for (const field of fields) {
    const value = user[field.name]
    if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') claims[field.name] = value
    else if (value === null) claims[field.name] = null
  }
  return claims
}

// The label sets of the cache counters, made once.
const SESSION_HIT = Object.freeze({ cache: 'session', result: 'hit' })
const SESSION_MISS = Object.freeze({ cache: 'session', result: 'miss' })
const BEARER_HIT = Object.freeze({ cache: 'bearer', result: 'hit' })
const BEARER_MISS = Object.freeze({ cache: 'bearer', result: 'miss' })

/**
 * Resolves cookie sessions through auth-core's validate-session (better-auth's getSession; cached
 * briefly, evicted at sign-out) and
 * bearer JWTs locally with jose, with per-user revocation (the token generation).
 */
export class IdentityResolver {
  readonly #app: FastifyInstance
  readonly #options: Required<IdentityResolverOptions>
  readonly #sessions: TtlCache<string, Resolution>
  readonly #unknownCookies: TtlCache<string, Resolution>
  readonly #revocations: TtlCache<string, number>
  readonly #verifiedTokens: TtlCache<string, VerifiedEntry>
  /** Whether a token client's login is live (not logged out, its refresh tokens not reused). */
  readonly #logins: TtlCache<string, boolean>
  readonly #inflight = new Map<string, Promise<Resolution>>()
  /** Counts evictions: a look-up that an eviction overtook answers its caller but is not cached. */
  #evictions = 0
  #broadcast: ((revocation: Revocation) => Promise<void>) | null = null
  readonly #broadcasting = new Set<Promise<void>>()
  readonly #listeners: Array<(revocation: Revocation | 'all') => void> = []

  constructor (app: FastifyInstance, options: Required<IdentityResolverOptions>) {
    this.#app = app
    this.#options = options
    this.#sessions = new TtlCache(options.sessionCacheTtl, SESSION_CACHE_ENTRIES)
    this.#unknownCookies = new TtlCache(options.sessionCacheTtl, ANONYMOUS_CACHE_ENTRIES)
    this.#revocations = new TtlCache(options.sessionCacheTtl, SESSION_CACHE_ENTRIES)
    this.#verifiedTokens = new TtlCache(options.sessionCacheTtl, SESSION_CACHE_ENTRIES)
    this.#logins = new TtlCache(options.sessionCacheTtl, SESSION_CACHE_ENTRIES)
  }

  /**
   * The caller when it is known without I/O: anonymous, a cached session, or a verified token whose
   * user's revocation time is cached. `undefined` when `resolve` must look it up.
   */
  resolveNow (request: FastifyRequest): Resolution | undefined {
    const token = bearerToken(request.headers.authorization)
    if (token !== null) return this.#bearerNow(token)
    const cookies = sessionCookies(request.headers.cookie)
    if (cookies === null) return ANONYMOUS
    const cached = this.#cachedSession(cookieKey(cookies))
    // A miss is counted by `resolve`, which looks it up.
    if (cached !== undefined) this.#app.metrics?.cacheReads.inc(SESSION_HIT)
    return cached
  }

  #cachedSession (key: string): Resolution | undefined {
    return this.#sessions.get(key) ?? this.#unknownCookies.get(key)
  }

  /** How many entries each cache holds (every key is a digest or an id: bounded in bytes too). */
  cacheSizes (): { sessions: number, unknownCookies: number, revocations: number, verifiedTokens: number, logins: number } {
    return { sessions: this.#sessions.size, unknownCookies: this.#unknownCookies.size, revocations: this.#revocations.size, verifiedTokens: this.#verifiedTokens.size, logins: this.#logins.size }
  }

  /** Drops expired entries of every cache (a timer calls it; reads drop them too). */
  sweep (): void {
    this.#sessions.sweep()
    this.#unknownCookies.sweep()
    this.#revocations.sweep()
    this.#verifiedTokens.sweep()
    this.#logins.sweep()
  }

  async resolve (request: FastifyRequest): Promise<Resolution> {
    const token = bearerToken(request.headers.authorization)
    if (token !== null) return this.#resolveBearer(token)
    const cookies = sessionCookies(request.headers.cookie)
    if (cookies === null) return ANONYMOUS
    const key = cookieKey(cookies)
    const cached = this.#cachedSession(key)
    this.#app.metrics?.cacheReads.inc(cached === undefined ? SESSION_MISS : SESSION_HIT)
    if (cached !== undefined) return cached
    // Concurrent requests with one cookie share one look-up.
    let pending = this.#inflight.get(key)
    if (pending === undefined) {
      pending = this.#lookUpSession(cookies, key, request).finally(() => { this.#inflight.delete(key) })
      this.#inflight.set(key, pending)
    }
    return pending
  }

  /**
   * Announces this replica's evictions to the others (the revocation bus); without it evictions stay
   * on this replica and the others forget by their TTL.
   */
  broadcastWith (broadcast: (revocation: Revocation) => Promise<void>): void {
    this.#broadcast = broadcast
  }

  /** Forgets a cookie session at once (sign-out through the gateway), here and on every replica. */
  evict (cookieHeader: string | undefined): void {
    const cookies = sessionCookies(cookieHeader)
    if (cookies === null) return
    const session = cookieKey(cookies)
    this.forget({ session })
    void this.announce({ session })
  }

  /** Forgets whether a token client's login is live (logout, a reused refresh token), here and on every replica; resolves once announced. */
  async evictLogin (login: string): Promise<void> {
    this.forget({ login })
    await this.announce({ login })
  }

  /** Forgets every cached session of a user and the cached revocation time (revoke all), here and on every replica. */
  evictUser (userId: string): void {
    this.forget({ user: userId })
    void this.announce({ user: userId })
  }

  /** Other caches of what a revocation names (the consented profile claims) forget with these. */
  onForget (listener: (revocation: Revocation | 'all') => void): void {
    this.#listeners.push(listener)
  }

  /** Forgets what a revocation names on this replica only (a message from another replica). */
  forget (revocation: Revocation): void {
    this.#evictions += 1
    if ('session' in revocation) {
      this.#sessions.delete(revocation.session)
    } else if ('user' in revocation) {
      const userId = revocation.user
      this.#sessions.deleteWhere((resolution) => resolution.identity?.userId === userId)
      this.#revocations.delete(userId)
    } else if ('login' in revocation) {
      this.#logins.delete(revocation.login)
    }
    for (const listener of this.#listeners) listener(revocation)
  }

  /** Forgets every cached session and token generation (revocations may have been missed). */
  forgetAll (): void {
    this.#evictions += 1
    this.#sessions.clear()
    this.#revocations.clear()
    this.#logins.clear()
    for (const listener of this.#listeners) listener('all')
  }

  /** Resolves once every eviction announced so far has reached Redis (or timed out). */
  async announced (): Promise<void> {
    if (this.#broadcasting.size > 0) await Promise.all(this.#broadcasting)
  }

  /** Tells the other replicas (this one already forgot); resolves once Redis has it or timed out. */
  async announce (revocation: Revocation): Promise<void> {
    if (this.#broadcast === null) return
    const sent = this.#broadcast(revocation).finally(() => { this.#broadcasting.delete(sent) })
    this.#broadcasting.add(sent)
    await sent
  }

  async #lookUpSession (cookies: string, key: string, request: FastifyRequest): Promise<Resolution> {
    const evictions = this.#evictions
    // auth-core's validate-session: `{ user, session }`, or `{ user: null }` for a cookie of no session.
    let session: { user?: SessionUser | null, session?: Record<string, unknown> | null } | null
    const metrics = this.#app.metrics
    const started = metrics === null ? 0 : performance.now()
    try {
      const response = await this.#app.authCore.request({
        method: 'GET',
        path: VALIDATE_SESSION_PATH,
        headers: { cookie: cookies, 'x-forwarded-for': clientAddress(request), [REQUEST_ID_HEADER]: request.id, accept: 'application/json' },
        // A caller waits on this: a hung auth-core turns into a 503 within seconds.
        headersTimeout: AUTH_LOOKUP_TIMEOUT_MS,
        bodyTimeout: AUTH_LOOKUP_TIMEOUT_MS
      })
      metrics?.upstreamDuration.observe({ upstream: 'auth', status: response.statusCode }, (performance.now() - started) / 1000)
      if (response.statusCode !== 200) {
        // better-auth answers 200 for every well-formed cookie; anything else is auth-core failing,
        // or auth-core answering that its database is down.
        if (response.statusCode >= 500) {
          const code = errorCodeOf(await response.body.text())
          if (code === 'database_unavailable') throw new DatabaseUnavailableError()
          // auth-core's tables are not migrated (yet): an operator's problem, said as such.
          if (code === 'database_schema_outdated') throw new DatabaseSchemaOutdatedError()
          throw new Error(`validate-session answered ${response.statusCode}`)
        }
        await response.body.dump()
        session = null
      } else {
        session = await response.body.json() as typeof session
      }
    } catch (err) {
      metrics?.authCoreLookups.inc({ outcome: 'error' })
      if (err instanceof DatabaseUnavailableError || err instanceof DatabaseSchemaOutdatedError) {
        request.log.warn({ err }, 'auth core cannot read the database for a session look-up')
        return { identity: null, error: err }
      }
      request.log.warn({ err }, 'auth core unreachable for a session look-up')
      return { identity: null, error: new AuthCoreUnavailableError({ cause: err }) }
    }
    // A forged or tampered cookie answers 200 with `null`: anonymous.
    const user = session?.user
    const resolution: Resolution = user === undefined || user === null || typeof user.id !== 'string'
      ? ANONYMOUS
      : {
          identity: {
            userId: user.id,
            email: user.email,
            name: user.name,
            user,
            session: session?.session ?? null,
            via: 'cookie',
            claims: customClaims(user, this.#options.userFields)
          },
          error: null
        }
    metrics?.authCoreLookups.inc({ outcome: resolution.identity === null ? 'anonymous' : 'signed_in' })
    if (resolution.identity === null) this.#unknownCookies.set(key, resolution)
    else if (evictions === this.#evictions) this.#sessions.set(key, resolution)
    return resolution
  }

  /** A token string that verified once verifies again: only its expiry and revocation can change, and both are checked on every request. */
  #verifiedToken (token: string): VerifiedEntry | undefined {
    const verified = this.#verifiedTokens.get(token)
    if (verified === undefined || verified.exp + CLOCK_TOLERANCE_SECONDS >= Date.now() / 1000) return verified
    this.#verifiedTokens.delete(token)
    return undefined
  }

  #bearerNow (token: string): Resolution | undefined {
    const verified = this.#verifiedToken(token)
    if (verified === undefined) return undefined
    const current = this.#revocations.get(verified.resolution.identity.userId)
    // Not decided here: `#resolveBearer` counts the read.
    if (current === undefined) return undefined
    let live = true
    if (verified.login !== null) {
      const cached = this.#logins.get(verified.login)
      if (cached === undefined) return undefined
      live = cached
    }
    this.#app.metrics?.cacheReads.inc(BEARER_HIT)
    return !live || isRevoked(verified.generation, current) ? { identity: null, error: new InvalidTokenError() } : verified.resolution
  }

  async #resolveBearer (token: string): Promise<Resolution> {
    let verified = this.#verifiedToken(token)
    this.#app.metrics?.cacheReads.inc(verified === undefined ? BEARER_MISS : BEARER_HIT)
    if (verified === undefined) {
      let payload: VerifiedToken
      try {
        payload = await this.#app.clientTokens.verifier.verify(token)
      } catch (err) {
        // An EdDSA token naming a key not loaded yet is looked up in Postgres: not knowing is not "invalid".
        if (isDatabaseUnavailable(err)) return { identity: null, error: new DatabaseUnavailableError({ cause: err }) }
        return { identity: null, error: new InvalidTokenError({ cause: err }) }
      }
      const { sub, email, name } = payload
      const user: SessionUser = { ...payload, id: sub, email: String(email ?? ''), name: String(name ?? '') }
      const identity: Identity = { userId: sub, email: user.email, name: user.name, user, session: null, via: 'bearer', claims: customClaims(user, this.#options.userFields) }
      verified = { exp: payload.exp, generation: generationOf(payload), login: loginOf(payload), resolution: { identity, error: null } }
      this.#verifiedTokens.set(token, verified)
    }
    const userId = verified.resolution.identity.userId
    let current = this.#revocations.get(userId)
    if (current === undefined) {
      try {
        current = await this.tokenGeneration(userId)
      } catch (err) {
        return { identity: null, error: new DatabaseUnavailableError({ cause: err }) }
      }
    }
    if (isRevoked(verified.generation, current)) return { identity: null, error: new InvalidTokenError() }
    if (verified.login !== null) {
      let live: boolean
      try {
        live = await this.#loginLive(verified.login)
      } catch (err) {
        return { identity: null, error: new DatabaseUnavailableError({ cause: err }) }
      }
      if (!live) return { identity: null, error: new InvalidTokenError() }
    }
    return verified.resolution
  }

  async #loginLive (login: string): Promise<boolean> {
    const cached = this.#logins.get(login)
    if (cached !== undefined) return cached
    const evictions = this.#evictions
    const live = await isLoginLive(this.#app.pg, login)
    // A logout that arrived meanwhile may postdate what was read.
    if (evictions === this.#evictions) this.#logins.set(login, live)
    return live
  }

  /** The user's token generation: tokens of an older one are refused (`USER_GONE` once deleted). */
  async tokenGeneration (userId: string): Promise<number> {
    const cached = this.#revocations.get(userId)
    if (cached !== undefined) return cached
    const evictions = this.#evictions
    const generation = await readTokenGeneration(this.#app.pg, userId)
    // A revocation that arrived meanwhile may postdate what was read.
    if (evictions === this.#evictions) this.#revocations.set(userId, generation)
    return generation
  }
}

/** The signed-in caller of a route the access policy already restricted to sessions. */
export function callerOf (request: FastifyRequest): Identity {
  // The access policy answers 401 before the handler for anyone not signed in; this is the backstop.
  if (request.identity === null) throw new UnauthorizedError()
  return request.identity
}
