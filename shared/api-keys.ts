/*
 * What the gateway and auth-core agree on about API keys (auth-core makes and verifies them with
 * better-auth's api-key plugin; the gateway recognises them, enforces their scope and counts them).
 */

/** Every key starts with it, so secret scanners and the gateway tell a key from a JWT. */
export const API_KEY_PREFIX = 'agk_'

/** What a key opens at the gateway: `rag` the RAG routes only; `api` every `/api/*` route. Never `/auth/*`. */
export const API_KEY_SCOPES = ['rag', 'api'] as const
export type ApiKeyScope = typeof API_KEY_SCOPES[number]

export const isApiKeyScope = (value: unknown): value is ApiKeyScope => API_KEY_SCOPES.includes(value as ApiKeyScope)

/** Longer than any key the plugin makes (prefix and 64 characters); a longer value is no key. */
export const MAX_API_KEY_LENGTH = 256

/** The request header a key may travel in (or `Authorization: Bearer <key>`). */
export const API_KEY_HEADER = 'x-api-key'

/** What the plugin generates (the prefix and letters); anything else is no key, and is not looked up. */
export const API_KEY_SHAPE = new RegExp(`^${API_KEY_PREFIX}[A-Za-z0-9]{1,${MAX_API_KEY_LENGTH - API_KEY_PREFIX.length}}$`)

/** The claim of an upstream identity token naming the API key the call was made with (its id, never the key). */
export const API_KEY_CLAIM = 'api_key'
