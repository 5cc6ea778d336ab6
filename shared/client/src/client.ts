import { createAuthClient } from 'better-auth/client'
import { adminClient, twoFactorClient } from 'better-auth/client/plugins'
import type { Profile, ProfileUpdate } from './profile.ts'
import { gatewayOrigin, jsonInit, resultOf, unreachable } from './http.ts'
import type { GatewayResult } from './http.ts'
import { streamEvents } from './rag-stream.ts'
import type { RagEvent, RagStreamOptions } from './rag-stream.ts'

/** The browser (and Node) client of the gateway, the package `@auth-gateway/client`. */
export interface GatewayClientOptions {
  /** The gateway's public origin, e.g. `https://api.example.com` (no `/auth` suffix). */
  baseURL: string
  /** The fetch to call, e.g. one that keeps cookies in Node. @default globalThis.fetch */
  fetch?: typeof fetch
}

export type { GatewayError } from './failure.ts'

export type { GatewayResult } from './http.ts'
export { createTokenClient } from './tokens.ts'
export type { TokenClient, TokenClientOptions, TokenSession, TokenUser, SignUpResult } from './tokens.ts'

export type { Profile, ProfileUpdate } from './profile.ts'
export type { RagEvent, RagStreamOptions } from './rag-stream.ts'
export { STREAM_INTERRUPTED } from './rag-stream.ts'

/** The RAG routes (`POST`, public; the reader's identity goes along when signed in). */
export type RagPath = '/api/v1/query' | '/api/v1/select'

export interface GatewayToken {
  token: string
  expiresAt: string
}

export { NETWORK_ERROR, UNEXPECTED_RESPONSE } from './failure.ts'

function createAuth (baseURL: string, customFetch: typeof fetch | undefined) {
  return createAuthClient({
    baseURL: `${baseURL}/auth`,
    // `auth.twoFactor.*` (TOTP enrolment and sign-in) and `auth.admin.*` (admins only: the gateway refuses the rest).
    plugins: [twoFactorClient(), adminClient()],
    fetchOptions: {
      credentials: 'include',
      ...(customFetch === undefined ? {} : { customFetchImpl: customFetch })
    }
  })
}

export type AuthClient = ReturnType<typeof createAuth>

export interface GatewayClient {
  /** better-auth's own client on `baseURL + "/auth"`: `signUp.email`, `signIn.email`, `getSession`, `signOut`… */
  auth: AuthClient
  profile: {
    get: () => Promise<GatewayResult<Profile>>
    save: (update: ProfileUpdate) => Promise<GatewayResult<Profile>>
    /** Erases the profile (and withdraws consent); `data` is null on success. */
    delete: () => Promise<GatewayResult<null>>
  }
  rag: {
    query: <T = unknown>(body: unknown) => Promise<GatewayResult<T>>
    select: <T = unknown>(body: unknown) => Promise<GatewayResult<T>>
    /**
     * Asks and reads the answer as it streams: server-sent events as `EventSource` parses them,
     * NDJSON a line an event, any other answer one event. Failures end the iteration with an
     * `error` event (`event.error`), never a throw; aborting `signal` or leaving the loop closes the
     * connection, and the gateway cancels the upstream call.
     */
    stream: (path: RagPath, body: unknown, options?: RagStreamOptions) => AsyncGenerator<RagEvent, void, undefined>
  }
  /**
   * The ways to sign in besides the password (docs/social-sign-in.md): a button each, which calls
   * `auth.signIn.social({ provider: id, callbackURL })`.
   */
  providers: () => Promise<GatewayResult<{ providers: SignInProvider[] }>>
  /** A JWT for the signed-in reader, to call a backend with `Authorization: Bearer`. */
  token: () => Promise<GatewayResult<GatewayToken>>
  /** The account flows that go by mail, and the ones that need the password (docs/account.md). */
  account: {
    /**
     * Mails a single-use link to choose a new password; it lands on `redirectTo` (an allowed origin)
     * with `?token=`. The answer is the same whether or not the address has an account.
     */
    requestPasswordReset: (email: string, redirectTo: string) => Promise<GatewayResult<AccountStatus>>
    /** Sets the new password with the token from the reset link; every session and token of the account ends. */
    resetPassword: (token: string, newPassword: string) => Promise<GatewayResult<AccountStatus>>
    /** Mails the verification link again; it lands on `callbackURL` signed in. */
    sendVerificationEmail: (email: string, callbackURL: string) => Promise<GatewayResult<AccountStatus>>
    /** Mails a link to the new address; the address changes once it is followed. */
    changeEmail: (newEmail: string, callbackURL: string) => Promise<GatewayResult<AccountStatus>>
    /** Needs the current password; `revokeOtherSessions` signs every other device out. */
    changePassword: (currentPassword: string, newPassword: string, options?: { revokeOtherSessions?: boolean }) => Promise<GatewayResult<unknown>>
    /** Erases the account, its sessions, tokens and profile (docs/account.md says what is kept). */
    delete: (password: string) => Promise<GatewayResult<AccountStatus>>
  }
  /**
   * The reader's API keys for scripts and notebooks (docs/scripts.md), with the session cookie. A key
   * is shown once, by `create`; `list` shows its start only.
   */
  apiKeys: {
    create: (key: { name: string, scope?: ApiKeyScope, expiresIn?: number }) => Promise<GatewayResult<CreatedApiKey>>
    list: () => Promise<GatewayResult<{ apiKeys: ApiKeyView[] }>>
    /** Refused at once, on every replica. */
    delete: (keyId: string) => Promise<GatewayResult<{ success: boolean }>>
  }
  /** Where the reader is signed in (never a session's token), with the session cookie. */
  sessions: {
    list: () => Promise<GatewayResult<{ sessions: SessionView[] }>>
    /** Signs one session out; the others stay. */
    revoke: (id: string) => Promise<GatewayResult<null>>
    /** Signs every other session out (and refuses the account's older bearer tokens). */
    revokeOthers: () => Promise<GatewayResult<AccountStatus>>
  }
}

/** A provider of `GET /auth/providers`: GitHub or Google (`social`), or the OpenID Connect provider (`oidc`). */
export interface SignInProvider {
  id: string
  type: 'social' | 'oidc'
}

/** What a key opens: `rag` the RAG routes, `api` every `/api/*` route. */
export type ApiKeyScope = 'rag' | 'api'

/** A key as `list` shows it: never the key itself. */
export interface ApiKeyView {
  id: string
  name: string | null
  /** The key's first characters, to recognise it. */
  start: string | null
  expiresAt: string | null
  createdAt: string
  enabled: boolean
  /** The scope, as `{ gateway: [scope] }`. */
  permissions: Record<string, string[]> | null
}

/** A new key: `key` is shown this once. */
export interface CreatedApiKey extends ApiKeyView {
  key: string
}

/** One of the reader's sessions (`GET /api/v1/sessions`). */
export interface SessionView {
  id: string
  createdAt: string
  lastActiveAt: string
  expiresAt: string
  ipAddress: string | null
  browser: string | null
  os: string | null
  /** The session of this browser. */
  current: boolean
}

/** better-auth's answer to the mail flows. */
export interface AccountStatus {
  status: boolean
}

export function createGatewayClient (options: GatewayClientOptions): GatewayClient {
  const baseURL = gatewayOrigin('createGatewayClient', options?.baseURL)
  const customFetch = options.fetch

  async function call<T> (method: string, path: string, body?: unknown): Promise<GatewayResult<T>> {
    // Looked up per call, not captured, so a page or test can replace globalThis.fetch.
    const doFetch = customFetch ?? globalThis.fetch
    let response: Response
    try {
      response = await doFetch(`${baseURL}${path}`, { ...jsonInit(method, body), credentials: 'include' })
    } catch (err) {
      return unreachable(err)
    }
    return resultOf<T>(response)
  }

  return {
    auth: createAuth(baseURL, customFetch),
    profile: {
      get: async () => call<Profile>('GET', '/api/v1/profile'),
      save: async (update) => call<Profile>('POST', '/api/v1/profile', update),
      delete: async () => call<null>('DELETE', '/api/v1/profile')
    },
    rag: {
      query: async <T = unknown>(body: unknown) => call<T>('POST', '/api/v1/query', body),
      select: async <T = unknown>(body: unknown) => call<T>('POST', '/api/v1/select', body),
      stream: (path, body, streamOptions) => streamEvents(customFetch ?? globalThis.fetch, `${baseURL}${path}`, body, streamOptions)
    },
    providers: async () => call<{ providers: SignInProvider[] }>('GET', '/auth/providers'),
    token: async () => call<GatewayToken>('GET', '/auth/jwt'),
    account: {
      requestPasswordReset: async (email, redirectTo) => call<AccountStatus>('POST', '/auth/request-password-reset', { email, redirectTo }),
      resetPassword: async (token, newPassword) => call<AccountStatus>('POST', '/auth/reset-password', { token, newPassword }),
      sendVerificationEmail: async (email, callbackURL) => call<AccountStatus>('POST', '/auth/send-verification-email', { email, callbackURL }),
      changeEmail: async (newEmail, callbackURL) => call<AccountStatus>('POST', '/auth/change-email', { newEmail, callbackURL }),
      changePassword: async (currentPassword, newPassword, options = {}) => call<unknown>('POST', '/auth/change-password', { currentPassword, newPassword, revokeOtherSessions: options.revokeOtherSessions === true }),
      delete: async (password) => call<AccountStatus>('POST', '/auth/delete-user', { password })
    },
    apiKeys: {
      create: async (key) => call<CreatedApiKey>('POST', '/auth/api-key/create', key),
      list: async () => call<{ apiKeys: ApiKeyView[] }>('GET', '/auth/api-key/list'),
      delete: async (keyId) => call<{ success: boolean }>('POST', '/auth/api-key/delete', { keyId })
    },
    sessions: {
      list: async () => call<{ sessions: SessionView[] }>('GET', '/api/v1/sessions'),
      revoke: async (id) => call<null>('DELETE', `/api/v1/sessions/${encodeURIComponent(id)}`),
      revokeOthers: async () => call<AccountStatus>('POST', '/auth/revoke-other-sessions', {})
    }
  }
}
