import { APIError, createAuthMiddleware } from 'better-auth/api'
import type { AuthContext, BetterAuthOptions, BetterAuthPlugin, User } from 'better-auth'
import { parseUserOutput } from 'better-auth/db'
import { apiKey, API_KEY_TABLE_NAME, defaultKeyHasher } from '@better-auth/api-key'
import type { ApiKey } from '@better-auth/api-key'
import { API_KEY_PREFIX, API_KEY_SCOPES, API_KEY_SHAPE, isApiKeyScope } from '../../../shared/api-keys.ts'
import type { ApiKeyScope } from '../../../shared/api-keys.ts'

/*
 * API keys for scripts and notebooks: better-auth's api-key plugin (`/auth/api-key/create`, `list`,
 * `get`, `update`, `delete`), configured here, and what it does not decide itself: the key's scope,
 * which fields a reader may send, and how auth-core answers who a key belongs to
 * (`verifyGatewayApiKey`, served as `POST /api/verify-api-key` on the internal port).
 *
 * A key is its own credential, like a personal access token: it survives "sign out everywhere" and
 * a password change or reset (those end sessions and bearer tokens, not keys). It stops working when
 * it is deleted, disabled or expired, and when its owner is banned or deleted.
 */

/** @default 'rag' */
export const DEFAULT_API_KEY_SCOPE: ApiKeyScope = 'rag'
const DAY_SECONDS = 24 * 60 * 60
export const DEFAULT_API_KEY_EXPIRES_IN_SECONDS = 90 * DAY_SECONDS
export const MIN_API_KEY_EXPIRES_IN_DAYS = 1
export const MAX_API_KEY_EXPIRES_IN_DAYS = 365
/** Where the scope is kept: the plugin's `permissions` column, as `{ gateway: [scope] }`. */
const SCOPE_RESOURCE = 'gateway'

/** The only body fields a reader sends; the rest (permissions, rate limits, refills, `remaining`, `userId`, `prefix`, metadata) stay the server's. */
const CREATE_FIELDS: ReadonlySet<string> = new Set(['name', 'expiresIn', 'scope'])
const UPDATE_FIELDS: ReadonlySet<string> = new Set(['keyId', 'name', 'enabled', 'expiresIn'])

export const API_KEY_ERROR_CODES = {
  INVALID_API_KEY_SCOPE: `scope must be one of ${API_KEY_SCOPES.map((scope) => `"${scope}"`).join(', ')}`,
  API_KEY_FIELD_NOT_ALLOWED: 'Only name, expiresIn and scope can be set when creating an API key; name, enabled and expiresIn when updating one',
  API_KEY_EXPIRY_REQUIRED: 'An API key always expires: expiresIn cannot be null'
} as const

function refuse (code: keyof typeof API_KEY_ERROR_CODES, detail?: string): APIError {
  return new APIError('BAD_REQUEST', { code, message: detail === undefined ? API_KEY_ERROR_CODES[code] : `${API_KEY_ERROR_CODES[code]} (${detail})` })
}

function bodyFields (body: unknown, allowed: ReadonlySet<string>): Record<string, unknown> {
  // Not an object: the plugin's own body validation refuses it.
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return {}
  const fields = body as Record<string, unknown>
  const extra = Object.keys(fields).find((field) => !allowed.has(field))
  if (extra !== undefined) throw refuse('API_KEY_FIELD_NOT_ALLOWED', `got "${extra}"`)
  return fields
}

/**
 * The plugin refuses client-set `permissions`, so the scope a reader chose is decided in a before
 * hook and handed to the plugin's `defaultPermissions` through the request's endpoint context (the
 * same object in hooks and endpoint, as `token-revocation` relies on too).
 */
const chosenScopes = new WeakMap<object, ApiKeyScope>()

function scopePermissions (_userId: string, ctx: { context: object }): Record<string, string[]> {
  const scope = chosenScopes.get(ctx.context)
  // Only a server-side call that skipped the hooks gets here without one: refused, never widened.
  if (scope === undefined) throw new Error('api-keys: no scope was decided for this request')
  chosenScopes.delete(ctx.context)
  return { [SCOPE_RESOURCE]: [scope] }
}

/** The api-key plugin as the gateway uses it. */
export function apiKeys () {
  return apiKey({
    defaultPrefix: API_KEY_PREFIX,
    // The default already; said here because the verify route hashes with the same function.
    disableKeyHashing: false,
    requireName: true,
    keyExpiration: {
      defaultExpiresIn: DEFAULT_API_KEY_EXPIRES_IN_SECONDS,
      minExpiresIn: MIN_API_KEY_EXPIRES_IN_DAYS,
      maxExpiresIn: MAX_API_KEY_EXPIRES_IN_DAYS
    },
    // The gateway counts requests per key (shared across replicas); the plugin's counter is a write per use.
    rateLimit: { enabled: false },
    // A key never stands in for a session at auth-core: it opens no `/auth/*` endpoint.
    enableSessionForAPIKeys: false,
    enableMetadata: false,
    permissions: { defaultPermissions: scopePermissions }
  })
}

/** The reader's side of the api-key plugin: the scope, the fields a reader may send, keys gone with their owner. */
export function apiKeyPolicy () {
  return {
    id: 'api-key-policy',
    init (context: AuthContext) {
      return {
        options: {
          databaseHooks: {
            user: {
              delete: {
                // The keys reference their owner by id only (no foreign key to cascade).
                async after (user: User) {
                  await context.adapter.deleteMany({ model: API_KEY_TABLE_NAME, where: [{ field: 'referenceId', value: user.id }] })
                }
              }
            }
          }
        }
      }
    },
    hooks: {
      before: [{
        matcher: (ctx: { path?: string }) => ctx.path === '/api-key/create',
        handler: createAuthMiddleware(async (ctx) => {
          const { scope = DEFAULT_API_KEY_SCOPE } = bodyFields(ctx.body, CREATE_FIELDS)
          if (!isApiKeyScope(scope)) throw refuse('INVALID_API_KEY_SCOPE')
          chosenScopes.set(ctx.context, scope)
        })
      }, {
        matcher: (ctx: { path?: string }) => ctx.path === '/api-key/update',
        handler: createAuthMiddleware(async (ctx) => {
          // `expiresIn: null` would make the key never expire, past the maximum.
          if (bodyFields(ctx.body, UPDATE_FIELDS).expiresIn === null) throw refuse('API_KEY_EXPIRY_REQUIRED')
        })
      }]
    }
  } satisfies BetterAuthPlugin
}

/** What `verifyGatewayApiKey` answers for a valid key. */
export interface VerifiedApiKey {
  /** The owner, as `getSession` (and so validate-session) returns a user. */
  user: Record<string, unknown>
  key: { id: string, name: string | null, scope: ApiKeyScope, expiresAt: Date | null }
}

/** What of better-auth's context (`auth.$context`) the look-up uses. */
export interface ApiKeyLookup {
  options: BetterAuthOptions
  adapter: { findOne: <T>(query: { model: string, where: Array<{ field: string, value: string }> }) => Promise<T | null> }
  internalAdapter: { findUserById: (userId: string) => Promise<User | null> }
}

type ApiKeyRow = Omit<ApiKey, 'permissions' | 'metadata'> & { permissions: string | null }
type OwnerRow = User & { banned?: boolean | null, banExpires?: Date | string | null }

function scopeOf (permissions: string | null): ApiKeyScope | null {
  if (permissions === null) return null
  try {
    const scopes = (JSON.parse(permissions) as Record<string, unknown> | null)?.[SCOPE_RESOURCE]
    return Array.isArray(scopes) && scopes.length === 1 && isApiKeyScope(scopes[0]) ? scopes[0] : null
  } catch {
    return null
  }
}

/** A ban in force: the admin plugin's `banned`, until `banExpires` if it has one. */
function isBanned (user: OwnerRow, now: number): boolean {
  if (user.banned !== true) return false
  return user.banExpires === null || user.banExpires === undefined || new Date(user.banExpires).getTime() > now
}

/**
 * Who a key belongs to, or `null` for a key that is unknown, disabled, expired, without a scope of
 * ours, or whose owner is gone or banned. Hashed as the plugin hashes it; one look-up by the hashed
 * key and one of the owner, and no write (the plugin's own verify writes twice per call and answers
 * "invalid" when Postgres is down, where this throws the database's error).
 */
export async function verifyGatewayApiKey (context: ApiKeyLookup, key: string): Promise<VerifiedApiKey | null> {
  if (!API_KEY_SHAPE.test(key)) return null
  const row = await context.adapter.findOne<ApiKeyRow>({ model: API_KEY_TABLE_NAME, where: [{ field: 'key', value: await defaultKeyHasher(key) }] })
  if (row === null || row.enabled === false) return null
  const now = Date.now()
  if (row.expiresAt !== null && new Date(row.expiresAt).getTime() <= now) return null
  // A quota the plugin would count down: none of ours has one (server-only, never set).
  if (row.remaining !== null) return null
  const scope = scopeOf(row.permissions)
  if (scope === null) return null
  const user = await context.internalAdapter.findUserById(row.referenceId) as OwnerRow | null
  if (user === null || isBanned(user, now)) return null
  return {
    user: { ...parseUserOutput(context.options, user) },
    key: { id: row.id, name: row.name, scope, expiresAt: row.expiresAt === null ? null : new Date(row.expiresAt) }
  }
}
