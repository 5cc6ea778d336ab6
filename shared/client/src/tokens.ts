import { gatewayOrigin, jsonInit, resultOf, unreachable } from './http.ts'
import type { GatewayResult } from './http.ts'

/*
 * The client of scripts, notebooks, and apps without a cookie jar (docs/scripts.md): `/auth/login`
 * gives a 15-minute access token and a refresh token; every call carries the access token and the
 * client refreshes it shortly before it expires (and once after a 401 `invalid_token`). Each refresh
 * rotates the refresh token: calls made while one is under way wait for it instead of refreshing
 * again, since a refresh token presented twice ends the whole login. Or an API key, which needs none
 * of this.
 */

/** The user as `/auth/login` and `/auth/me` describe it. */
export interface TokenUser {
  id: string
  email: string
  name: string
  [field: string]: unknown
}

/** What `/auth/login` and `/auth/token/refresh` answer: keep it (`onSession`) to go on later. */
export interface TokenSession {
  token: string
  /** ISO 8601. */
  expiresAt: string
  refreshToken: string
  /** ISO 8601. */
  refreshTokenExpiresAt: string
  user: TokenUser
}

/** A sign-up signs in, unless the address must be verified first. */
export type SignUpResult = TokenSession | { user: TokenUser, emailVerificationRequired: true }

export interface TokenClientOptions {
  /** The gateway's public origin, e.g. `https://api.example.com`. */
  baseURL: string
  /** @default globalThis.fetch */
  fetch?: typeof fetch
  /** A session kept from an earlier run; the client goes on with it (refreshing it when due). */
  session?: TokenSession | null
  /** Called with each new session (login, every refresh) and with `null` once it ends: where to keep it. */
  onSession?: (session: TokenSession | null) => void
  /** An API key (`agk_…`) instead of a login: sent as `X-API-Key` on every call. */
  apiKey?: string
  /** Milliseconds before the access token expires that it is refreshed. @default 60000 */
  refreshMargin?: number
  /** The clock, in milliseconds. @default Date.now */
  now?: () => number
}

export interface TokenClient {
  /** Signs in with the password (and `code`, the authenticator app's, for an account with two-factor sign-in). */
  login: (email: string, password: string, options?: { code?: string }) => Promise<GatewayResult<TokenSession>>
  /** Makes an account and signs in (outside a browser: a browser's sign-up is the cookie one). */
  signUp: (account: { email: string, password: string, name: string }) => Promise<GatewayResult<SignUpResult>>
  /** A new access and refresh token now (calls refresh by themselves; this is for a client that wants to). */
  refresh: () => Promise<GatewayResult<TokenSession>>
  /** Ends this login at the gateway (its access and refresh tokens) and forgets it here. */
  logout: () => Promise<GatewayResult<null>>
  /** The signed-in user, or a 401 `unauthorized`. */
  me: () => Promise<GatewayResult<{ user: TokenUser }>>
  /** `fetch` on the gateway with the credential; `path` starts with `/`. */
  fetch: (path: string, init?: RequestInit) => Promise<Response>
  /** A JSON call on the gateway with the credential. */
  call: <T = unknown>(method: string, path: string, body?: unknown) => Promise<GatewayResult<T>>
  rag: {
    query: <T = unknown>(body: unknown) => Promise<GatewayResult<T>>
    select: <T = unknown>(body: unknown) => Promise<GatewayResult<T>>
  }
  /** The current session, or null. */
  readonly session: TokenSession | null
}

const DEFAULT_REFRESH_MARGIN_MS = 60_000

/** Whether a request's body can be sent again (a stream cannot). */
function replayable (init: RequestInit | undefined): boolean {
  const body = init?.body
  return body === undefined || body === null || typeof body === 'string'
}

async function errorCodeOf (response: Response): Promise<unknown> {
  try {
    return (await response.clone().json() as { error?: unknown } | null)?.error
  } catch {
    return undefined
  }
}

function withHeader (init: RequestInit | undefined, name: string, value: string): RequestInit {
  const headers = new Headers(init?.headers)
  headers.set(name, value)
  // Never the cookies of a page the client may run in: this client's credential is its own.
  return { ...init, headers, credentials: 'omit' }
}

export function createTokenClient (options: TokenClientOptions): TokenClient {
  const baseURL = gatewayOrigin('createTokenClient', options?.baseURL)
  if (options.apiKey !== undefined && (typeof options.apiKey !== 'string' || options.apiKey === '')) {
    throw new TypeError('createTokenClient: apiKey must be a non-empty string')
  }
  const margin = options.refreshMargin ?? DEFAULT_REFRESH_MARGIN_MS
  const now = options.now ?? Date.now
  const doFetch = (url: string, init: RequestInit): Promise<Response> => (options.fetch ?? globalThis.fetch)(url, init)
  let session: TokenSession | null = options.session ?? null
  let refreshing: Promise<GatewayResult<TokenSession>> | null = null

  const keep = (next: TokenSession | null): void => {
    session = next
    options.onSession?.(next)
  }

  async function post<T> (path: string, body: unknown, headers: Record<string, string> = {}): Promise<GatewayResult<T>> {
    let response: Response
    try {
      response = await doFetch(`${baseURL}${path}`, { ...jsonInit('POST', body, headers), credentials: 'omit' })
    } catch (err) {
      return unreachable(err)
    }
    return resultOf<T>(response)
  }

  async function rotate (): Promise<GatewayResult<TokenSession>> {
    const current = session
    if (current === null) return { data: null, error: { error: 'unauthorized', message: 'Not logged in', status: 401 } }
    const result = await post<TokenSession>('/auth/token/refresh', { refreshToken: current.refreshToken })
    // The login ended (logged out, reused, expired): forget it. No answer: keep it and try again later.
    if (result.error !== null) {
      if (result.error.status === 401 && session === current) keep(null)
    } else if (session === current) {
      keep(result.data)
    }
    return result
  }

  /** One refresh at a time: a refresh token is good for one refresh, and a second use ends the login. */
  async function refresh (): Promise<GatewayResult<TokenSession>> {
    refreshing ??= rotate().finally(() => { refreshing = null })
    return refreshing
  }

  const due = (current: TokenSession): boolean => Date.parse(current.expiresAt) - margin <= now()

  async function authorised (path: string, init: RequestInit | undefined): Promise<Response> {
    if (options.apiKey !== undefined) return doFetch(`${baseURL}${path}`, withHeader(init, 'x-api-key', options.apiKey))
    if (refreshing !== null) await refreshing
    if (session !== null && due(session)) await refresh()
    const sent = session
    if (sent === null) return doFetch(`${baseURL}${path}`, { ...init, credentials: 'omit' })
    const response = await doFetch(`${baseURL}${path}`, withHeader(init, 'authorization', `Bearer ${sent.token}`))
    // The token was refused before it expired (a clock apart, a key rotated): refresh once and again.
    if (response.status !== 401 || !replayable(init) || await errorCodeOf(response) !== 'invalid_token') return response
    if (session === sent && (await refresh()).error !== null) return response
    if (session === null) return response
    return doFetch(`${baseURL}${path}`, withHeader(init, 'authorization', `Bearer ${session.token}`))
  }

  async function call<T> (method: string, path: string, body?: unknown): Promise<GatewayResult<T>> {
    let response: Response
    try {
      response = await authorised(path, jsonInit(method, body))
    } catch (err) {
      return unreachable(err)
    }
    return resultOf<T>(response)
  }

  return {
    async login (email, password, loginOptions = {}) {
      const result = await post<TokenSession>('/auth/login', { email, password, ...(loginOptions.code === undefined ? {} : { code: loginOptions.code }) })
      if (result.error === null) keep(result.data)
      return result
    },
    async signUp (account) {
      const result = await post<SignUpResult>('/auth/signup', account)
      if (result.error === null && 'token' in result.data) keep(result.data)
      return result
    },
    refresh,
    async logout () {
      const current = session
      if (current === null) return { data: null, error: null }
      keep(null)
      const result = await post<null>('/auth/logout', { refreshToken: current.refreshToken }, { authorization: `Bearer ${current.token}` })
      return result.error === null ? { data: null, error: null } : result
    },
    me: async () => call<{ user: TokenUser }>('GET', '/auth/me'),
    fetch: authorised,
    call,
    rag: {
      query: async <T = unknown>(body: unknown) => call<T>('POST', '/api/v1/query', body),
      select: async <T = unknown>(body: unknown) => call<T>('POST', '/api/v1/select', body)
    },
    get session () {
      return session
    }
  }
}
