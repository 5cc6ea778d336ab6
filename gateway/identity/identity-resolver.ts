import { createHash } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { API_KEY_CLAIM, API_KEY_HEADER, API_KEY_PREFIX, API_KEY_SHAPE } from '../../shared/api-keys.ts'
import type { ApiKeyScope } from '../../shared/api-keys.ts'
import type { JwtAlg, UserField } from '../../shared/config.ts'
import { DatabaseSchemaOutdatedError, isDatabaseUnavailable } from '../../shared/errors.ts'
import { bearerToken, CLOCK_TOLERANCE_SECONDS } from '../../shared/jwt.ts'
import type { ClientTokenVerifier, TokenClaims, TokenSigner, VerifiedToken } from '../../shared/jwt.ts'
import { generationOf, isLoginLive, isRevoked, loginOf, readTokenGeneration } from '../../shared/token-revocation.ts'
import { AuthCoreUnavailableError, DatabaseUnavailableError, InvalidApiKeyError, InvalidTokenError, UnauthorizedError } from '../errors.ts'
import { TtlCache } from '../ttl-cache.ts'
import { clientAddress } from '../client-address.ts'
import { AUTH_LOOKUP_TIMEOUT_MS } from '../proxy/upstream-client.ts'
import { VALIDATE_SESSION_PATH, VERIFY_API_KEY_PATH } from '../route-paths.ts'
import { REQUEST_ID_HEADER } from '../../shared/request-id.ts'
import type { Revocation } from './revocation-bus.ts'

export interface SessionUser {
  id: string
  email: string
  name: string
  [field: string]: unknown
}

/** The API key a caller came with (never the key itself). */
export interface ApiKeyFacts {
  id: string
  name: string | null
  scope: ApiKeyScope
  /** Milliseconds since the epoch; null for a key that never expires. */
  expiresAt: number | null
}

/** Who the caller is, as the gateway vouches for it. */
export interface Identity {
  userId: string
  email: string
  name: string
  /** The better-auth user (cookie, API key) or the token's claims (bearer). */
  user: SessionUser
  /** The better-auth session (cookie callers only). */
  session: Record<string, unknown> | null
  via: 'cookie' | 'bearer' | 'api_key'
  /** Custom user fields for the identity token (with an API key, also the key's id). */
  claims: TokenClaims
  /** The key of an `api_key` caller. */
  apiKey?: ApiKeyFacts
}

/**
 * The outcome of resolving a request: an identity, anonymous (`null`), or a failure the access
 * policy turns into 401/503 on protected routes and ignores on public ones.
 */
export type Resolution =
  | { identity: Identity, error: null }
  | { identity: null, error: null }
  | { identity: null, error: LookUpFailure | InstanceType<typeof InvalidTokenError> | InstanceType<typeof InvalidApiKeyError> }

/** Why auth-core could not say who a caller is. */
type LookUpFailure = InstanceType<typeof AuthCoreUnavailableError> | InstanceType<typeof DatabaseUnavailableError> | InstanceType<typeof DatabaseSchemaOutdatedError>

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

/** The cache key of a session cookie or an API key: its digest, so a cached entry costs 43 bytes whatever the credential's size (and holds no key). */
function digestOf (credential: string): string {
  return createHash('sha256').update(credential).digest('base64url')
}

/**
 * The API key a request carries: `X-API-Key`, else a bearer token that is one (`agk_…`). A header
 * sent twice arrives joined (`a, b`) and so is no key.
 */
export function apiKeyOf (headers: IncomingHttpHeaders, token: string | null = bearerToken(headers.authorization)): string | null {
  const header = headers[API_KEY_HEADER]
  if (header !== undefined) return typeof header === 'string' ? header.trim() : header.join(', ')
  return token !== null && token.startsWith(API_KEY_PREFIX) ? token : null
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
const API_KEY_HIT = Object.freeze({ cache: 'api_key', result: 'hit' })
const API_KEY_MISS = Object.freeze({ cache: 'api_key', result: 'miss' })
const INVALID_API_KEY: Resolution = Object.freeze({ identity: null, error: new InvalidApiKeyError() })

/**
 * Resolves cookie sessions through auth-core's validate-session (better-auth's getSession; cached
 * briefly, evicted at sign-out), API keys through auth-core's verify-api-key (the same way), and
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
  /** API keys by digest: their owners, and apart (in few entries, like unknown cookies) the keys that open nothing. */
  readonly #apiKeys: TtlCache<string, Resolution>
  readonly #unknownApiKeys: TtlCache<string, Resolution>
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
    this.#apiKeys = new TtlCache(options.sessionCacheTtl, SESSION_CACHE_ENTRIES)
    this.#unknownApiKeys = new TtlCache(options.sessionCacheTtl, ANONYMOUS_CACHE_ENTRIES)
  }

  /**
   * The caller when it is known without I/O: anonymous, a cached session, or a verified token whose
   * user's revocation time is cached. `undefined` when `resolve` must look it up.
   */
  resolveNow (request: FastifyRequest): Resolution | undefined {
    const token = bearerToken(request.headers.authorization)
    const key = apiKeyOf(request.headers, token)
    if (key !== null) return this.#apiKeyNow(key)
    if (token !== null) return this.#bearerNow(token)
    const cookies = sessionCookies(request.headers.cookie)
    if (cookies === null) return ANONYMOUS
    const cached = this.#cachedSession(digestOf(cookies))
    // A miss is counted by `resolve`, which looks it up.
    if (cached !== undefined) this.#app.metrics?.cacheReads.inc(SESSION_HIT)
    return cached
  }

  #cachedSession (key: string): Resolution | undefined {
    return this.#sessions.get(key) ?? this.#unknownCookies.get(key)
  }

  /** How many entries each cache holds (every key is a digest or an id: bounded in bytes too). */
  cacheSizes (): { sessions: number, unknownCookies: number, revocations: number, verifiedTokens: number, logins: number, apiKeys: number, unknownApiKeys: number } {
    return {
      sessions: this.#sessions.size,
      unknownCookies: this.#unknownCookies.size,
      revocations: this.#revocations.size,
      verifiedTokens: this.#verifiedTokens.size,
      logins: this.#logins.size,
      apiKeys: this.#apiKeys.size,
      unknownApiKeys: this.#unknownApiKeys.size
    }
  }

  /** Drops expired entries of every cache (a timer calls it; reads drop them too). */
  sweep (): void {
    this.#sessions.sweep()
    this.#unknownCookies.sweep()
    this.#revocations.sweep()
    this.#verifiedTokens.sweep()
    this.#logins.sweep()
    this.#apiKeys.sweep()
    this.#unknownApiKeys.sweep()
  }

  async resolve (request: FastifyRequest): Promise<Resolution> {
    const token = bearerToken(request.headers.authorization)
    const apiKey = apiKeyOf(request.headers, token)
    if (apiKey !== null) return this.#resolveApiKey(apiKey, request)
    if (token !== null) return this.#resolveBearer(token)
    const cookies = sessionCookies(request.headers.cookie)
    if (cookies === null) return ANONYMOUS
    const key = digestOf(cookies)
    const cached = this.#cachedSession(key)
    this.#app.metrics?.cacheReads.inc(cached === undefined ? SESSION_MISS : SESSION_HIT)
    if (cached !== undefined) return cached
    return this.#shared(key, () => this.#lookUpSession(cookies, key, request))
  }

  /** Concurrent requests with one credential share one look-up. */
  async #shared (key: string, lookUp: () => Promise<Resolution>): Promise<Resolution> {
    let pending = this.#inflight.get(key)
    if (pending === undefined) {
      pending = lookUp().finally(() => { this.#inflight.delete(key) })
      this.#inflight.set(key, pending)
    }
    return pending
  }

  #cachedApiKey (digest: string): Resolution | undefined {
    const cached = this.#apiKeys.get(digest) ?? this.#unknownApiKeys.get(digest)
    const expiresAt = cached?.identity?.apiKey?.expiresAt
    if (expiresAt === undefined || expiresAt === null || expiresAt > Date.now()) return cached
    // Expired while cached: auth-core says so on the next look-up.
    this.#apiKeys.delete(digest)
    return undefined
  }

  #apiKeyNow (key: string): Resolution | undefined {
    if (!API_KEY_SHAPE.test(key)) return INVALID_API_KEY
    const cached = this.#cachedApiKey(digestOf(key))
    if (cached !== undefined) this.#app.metrics?.cacheReads.inc(API_KEY_HIT)
    return cached
  }

  async #resolveApiKey (key: string, request: FastifyRequest): Promise<Resolution> {
    if (!API_KEY_SHAPE.test(key)) return INVALID_API_KEY
    const digest = digestOf(key)
    const cached = this.#cachedApiKey(digest)
    this.#app.metrics?.cacheReads.inc(cached === undefined ? API_KEY_MISS : API_KEY_HIT)
    if (cached !== undefined) return cached
    // Apart from cookie digests, which never contain ':'.
    return this.#shared(`key:${digest}`, () => this.#lookUpApiKey(key, digest, request))
  }

  async #lookUpApiKey (key: string, digest: string, request: FastifyRequest): Promise<Resolution> {
    const evictions = this.#evictions
    let answer: { user?: SessionUser | null, key?: { id: string, name: string | null, scope: ApiKeyScope, expiresAt: string | null } } | null
    try {
      answer = await this.#askAuthCore(request, 'POST', VERIFY_API_KEY_PATH, { 'content-type': 'application/json' }, JSON.stringify({ key })) as typeof answer
    } catch (err) {
      return this.#lookUpFailed(err, request, 'an API key')
    }
    const user = answer?.user
    const facts = answer?.key
    if (user === undefined || user === null || typeof user.id !== 'string' || facts === undefined) {
      this.#app.metrics?.authCoreLookups.inc({ outcome: 'anonymous' })
      this.#unknownApiKeys.set(digest, INVALID_API_KEY)
      return INVALID_API_KEY
    }
    this.#app.metrics?.authCoreLookups.inc({ outcome: 'signed_in' })
    // A key acts as its owner, never with the owner's role: a leaked key of an admin opens no admin route.
    const { role: _role, ...owner } = user
    const apiKey: ApiKeyFacts = { id: facts.id, name: facts.name, scope: facts.scope, expiresAt: facts.expiresAt === null ? null : Date.parse(facts.expiresAt) }
    const resolution: Resolution = {
      identity: {
        userId: owner.id,
        email: owner.email,
        name: owner.name,
        user: owner,
        session: null,
        via: 'api_key',
        claims: { ...customClaims(owner, this.#options.userFields), [API_KEY_CLAIM]: apiKey.id },
        apiKey
      },
      error: null
    }
    if (evictions === this.#evictions) this.#apiKeys.set(digest, resolution)
    return resolution
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
    const session = digestOf(cookies)
    this.forget({ session })
    void this.announce({ session })
  }

  /** Forgets whether a token client's login is live (logout, a reused refresh token), here and on every replica; resolves once announced. */
  async evictLogin (login: string): Promise<void> {
    this.forget({ login })
    await this.announce({ login })
  }

  /** Forgets an API key at once (deleted or changed through the gateway), here and on every replica. */
  evictApiKey (keyId: string): void {
    this.forget({ apiKey: keyId })
    void this.announce({ apiKey: keyId })
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
      // A ban or a deletion ends the user's keys too (they outlive a sign-out, and are simply verified
      // again); a lifted ban opens them again (the keys that opened nothing name no owner: all go).
      this.#apiKeys.deleteWhere((resolution) => resolution.identity?.userId === userId)
      this.#unknownApiKeys.clear()
      this.#revocations.delete(userId)
    } else if ('login' in revocation) {
      this.#logins.delete(revocation.login)
    } else if ('apiKey' in revocation) {
      const keyId = revocation.apiKey
      this.#apiKeys.deleteWhere((resolution) => resolution.identity?.apiKey?.id === keyId)
      // A key enabled again must not wait for its "opens nothing" to expire.
      this.#unknownApiKeys.clear()
    }
    for (const listener of this.#listeners) listener(revocation)
  }

  /** Forgets every cached session and token generation (revocations may have been missed). */
  forgetAll (): void {
    this.#evictions += 1
    this.#sessions.clear()
    this.#revocations.clear()
    this.#logins.clear()
    this.#apiKeys.clear()
    this.#unknownApiKeys.clear()
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

  /**
   * One question to auth-core on its internal port: the answer's JSON, or null for a 4xx; throws
   * `DatabaseUnavailableError`/`DatabaseSchemaOutdatedError` when auth-core says so, else any failure.
   */
  async #askAuthCore (request: FastifyRequest, method: 'GET' | 'POST', path: string, headers: Record<string, string>, body?: string): Promise<unknown> {
    const metrics = this.#app.metrics
    const started = metrics === null ? 0 : performance.now()
    const response = await this.#app.authCore.request({
      method,
      path,
      headers: { ...headers, 'x-forwarded-for': clientAddress(request), [REQUEST_ID_HEADER]: request.id, accept: 'application/json' },
      body,
      // A caller waits on this: a hung auth-core turns into a 503 within seconds.
      headersTimeout: AUTH_LOOKUP_TIMEOUT_MS,
      bodyTimeout: AUTH_LOOKUP_TIMEOUT_MS
    })
    metrics?.upstreamDuration.observe({ upstream: 'auth', status: response.statusCode }, (performance.now() - started) / 1000)
    if (response.statusCode === 200) return response.body.json()
    // better-auth answers 200 for every well-formed cookie, verify-api-key for every key; anything
    // else is auth-core failing, or auth-core answering that its database is down.
    if (response.statusCode >= 500) {
      const code = errorCodeOf(await response.body.text())
      if (code === 'database_unavailable') throw new DatabaseUnavailableError()
      // auth-core's tables are not migrated (yet): an operator's problem, said as such.
      if (code === 'database_schema_outdated') throw new DatabaseSchemaOutdatedError()
      throw new Error(`${path} answered ${response.statusCode}`)
    }
    await response.body.dump()
    return null
  }

  /** A look-up that could not say who the caller is: not "anonymous", a 503 wherever it matters. */
  #lookUpFailed (err: unknown, request: FastifyRequest, what: string): Resolution {
    this.#app.metrics?.authCoreLookups.inc({ outcome: 'error' })
    if (err instanceof DatabaseUnavailableError || err instanceof DatabaseSchemaOutdatedError) {
      request.log.warn({ err }, `auth core cannot read the database for ${what}`)
      return { identity: null, error: err }
    }
    request.log.warn({ err }, `auth core unreachable for ${what}`)
    return { identity: null, error: new AuthCoreUnavailableError({ cause: err }) }
  }

  async #lookUpSession (cookies: string, key: string, request: FastifyRequest): Promise<Resolution> {
    const evictions = this.#evictions
    // auth-core's validate-session: `{ user, session }`, or `{ user: null }` for a cookie of no session.
    let session: { user?: SessionUser | null, session?: Record<string, unknown> | null } | null
    try {
      session = await this.#askAuthCore(request, 'GET', VALIDATE_SESSION_PATH, { cookie: cookies }) as typeof session
    } catch (err) {
      return this.#lookUpFailed(err, request, 'a session look-up')
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
    this.#app.metrics?.authCoreLookups.inc({ outcome: resolution.identity === null ? 'anonymous' : 'signed_in' })
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
    return this.#readThrough(this.#logins, login, async () => isLoginLive(this.#app.pg, login))
  }

  /** The user's token generation: tokens of an older one are refused (`USER_GONE` once deleted). */
  async tokenGeneration (userId: string): Promise<number> {
    return this.#readThrough(this.#revocations, userId, async () => readTokenGeneration(this.#app.pg, userId))
  }

  /** A cached value, else read and cached, unless an eviction arrived meanwhile (it may postdate what was read). */
  async #readThrough<V> (cache: TtlCache<string, V>, key: string, read: () => Promise<V>): Promise<V> {
    const cached = cache.get(key)
    if (cached !== undefined) return cached
    const evictions = this.#evictions
    const value = await read()
    if (evictions === this.#evictions) cache.set(key, value)
    return value
  }
}

/** The signed-in caller of a route the access policy already restricted to sessions. */
export function callerOf (request: FastifyRequest): Identity {
  // The access policy answers 401 before the handler for anyone not signed in; this is the backstop.
  if (request.identity === null) throw new UnauthorizedError()
  return request.identity
}
