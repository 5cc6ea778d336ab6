import { matchingRules } from '../access/is-endpoint-accessible.ts'
import type { AccessRule } from '../access/rules.ts'
import { AUTH_ALIASES, AUTH_PREFIX } from '../route-paths.ts'

/*
 * The gateway's API reference: its own routes (@fastify/swagger, from the route schemas) and
 * better-auth's endpoints (auth-core's `openAPI` document) at the paths the gateway serves them on,
 * in one OpenAPI 3.1 document, with keys sorted so the same routes always give the same text.
 */

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json }
export type JsonObject = { [key: string]: Json }

/** What of an OpenAPI document this module reads; the rest is carried as it is. */
export interface OpenApiDocument {
  openapi: string
  info: JsonObject
  paths: Record<string, Record<string, JsonObject>>
  components?: { schemas?: JsonObject, securitySchemes?: JsonObject, responses?: JsonObject }
  tags?: JsonObject[]
  [key: string]: Json | undefined | object
}

export const OPENAPI_VERSION = '3.1.0'
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const
export const ERROR_SCHEMA = 'Error'
const ERROR_REF = { $ref: `#/components/schemas/${ERROR_SCHEMA}` }
/** An error answer, with its own description beside the reference (OpenAPI 3.1 allows it). */
const errorResponse = (description: string): Json => ({ $ref: `#/components/responses/${ERROR_SCHEMA}`, description })
/** The better-auth tag of its own (non-plugin) endpoints. */
const BETTER_AUTH_DEFAULT_TAG = 'Default'
const AUTH_TAG = 'Auth'

/** Every error body the gateway and auth-core send (shared/errors.ts `ErrorBody`). */
const ERROR_BODY: JsonObject = {
  type: 'object',
  description: 'Every error answer. better-auth\'s own refusals also carry its `code` (the same, upper-case).',
  required: ['error', 'message'],
  additionalProperties: true,
  properties: {
    error: { type: 'string', description: 'The error code, lower-case (docs/errors.md)', examples: ['unauthorized'] },
    message: { type: 'string', description: 'A sentence for people' },
    requestId: { type: 'string', description: 'The request\'s id, also in `X-Request-Id`: quote it when reporting a failure' }
  }
}

const SECURITY_SCHEMES: JsonObject = {
  sessionCookie: { type: 'apiKey', in: 'cookie', name: 'better-auth.session_token', description: 'The better-auth session cookie (`__Secure-` prefixed over https)' },
  bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'A client token from `GET /auth/jwt`, or an access token from `POST /auth/login`' },
  apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key', description: 'An API key (`agk_…`, from `POST /auth/api-key/create`; also as `Authorization: Bearer`), within its scope: `rag` the RAG routes, `api` every `/api/*` route, never `/auth/*` or a `role:` route' }
}

const TAGS: Record<string, string> = {
  [AUTH_TAG]: 'better-auth\'s endpoints, proxied to auth-core (`/auth/*`)',
  Admin: 'better-auth\'s admin plugin (`role:admin`)',
  'Two-factor': 'better-auth\'s two-factor plugin',
  'Sign-in-providers': 'GitHub, Google and OpenID Connect sign-in: which are configured',
  Tokens: 'Client tokens and the identity tokens\' public keys',
  Health: 'Liveness and readiness',
  Profile: 'The reader\'s profile and consent',
  Sessions: 'Where the reader is signed in',
  RAG: 'The RAG upstream (public; the identity is attached when signed in)',
  Reference: 'This document'
}

// Code-point order: the same on every machine, unlike localeCompare.
function compare (a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

function isObject (value: unknown): value is JsonObject {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

/** The value with every object's keys in code-point order (arrays keep theirs: `required`, `enum`). */
export function sortedKeys (value: Json): Json {
  if (Array.isArray(value)) return value.map(sortedKeys)
  if (!isObject(value)) return value
  return Object.fromEntries(Object.keys(value).sort(compare).map((key) => [key, sortedKeys(value[key])]))
}

/** `/sessions/{id}` → the route pattern the access rules are written in, `/sessions/:id`. */
function routePattern (path: string): string {
  return path.replace(/\{([^}]+)\}/g, ':$1')
}

/** Who may call an operation, from the access rules (`x-access`), and the credentials it takes. */
function withAccess (operation: JsonObject, method: string, path: string, rules: readonly AccessRule[]): JsonObject {
  const [rule] = matchingRules(rules, method.toUpperCase(), routePattern(path))
  if (rule === undefined) return operation
  const { security: _ignored, ...rest } = operation
  const result: JsonObject = { ...rest, 'x-access': rule.access }
  if (rule.access === 'public') return result
  // An API key opens `/api/*` session routes (scope `api`), never `/auth/*` nor a role's.
  result.security = rule.access === 'session' && path.startsWith('/api/') ? [{ sessionCookie: [] }, { bearerAuth: [] }, { apiKey: [] }] : [{ sessionCookie: [] }, { bearerAuth: [] }]
  return result
}

/** better-auth's error answers, as auth-core sends them through the gateway: the project's error body. */
function withErrorBodies (responses: Json | undefined): JsonObject {
  const result: JsonObject = isObject(responses) ? { ...responses } : {}
  for (const [status, response] of Object.entries(result)) {
    if (!/^[45]/.test(status) || !isObject(response)) continue
    result[status] = errorResponse(typeof response.description === 'string' ? response.description : 'Error')
  }
  return result
}

/** Every gateway operation documents the error body for 4xx and 5xx (the error handler owns its shape). */
function withDefaultErrors (responses: Json | undefined): JsonObject {
  const result: JsonObject = isObject(responses) ? { ...responses } : {}
  result['4XX'] ??= errorResponse('Refused: the body says why (`error`, `message`, `requestId`)')
  result['5XX'] ??= errorResponse('Failed: auth-core, Postgres or an upstream; the body says which')
  return result
}

function betterAuthTag (tag: Json): Json {
  return tag === BETTER_AUTH_DEFAULT_TAG ? AUTH_TAG : tag
}

/** better-auth's paths as the gateway serves them (`/sign-in/email` → `/auth/sign-in/email`). */
function betterAuthPaths (document: OpenApiDocument, rules: readonly AccessRule[]): Record<string, Record<string, JsonObject>> {
  const paths: Record<string, Record<string, JsonObject>> = {}
  for (const [path, item] of Object.entries(document.paths)) {
    const publicPath = `${AUTH_PREFIX}${path}`
    const operations: Record<string, JsonObject> = {}
    for (const method of METHODS) {
      const operation = item[method]
      if (!isObject(operation)) continue
      const tags = Array.isArray(operation.tags) ? operation.tags.map(betterAuthTag) : [AUTH_TAG]
      operations[method] = withAccess({ ...operation, tags, responses: withErrorBodies(operation.responses) }, method, publicPath, rules)
    }
    paths[publicPath] = operations
  }
  return paths
}

/** The aliases (`POST /auth/signin` …) as operations of their own, copies of their targets'. */
function aliasPaths (paths: Record<string, Record<string, JsonObject>>): Record<string, Record<string, JsonObject>> {
  const aliases: Record<string, Record<string, JsonObject>> = {}
  for (const [alias, { method, target }] of Object.entries(AUTH_ALIASES)) {
    const verb = method.toLowerCase()
    const operation = paths[target]?.[verb]
    if (operation === undefined) continue
    const operationId = typeof operation.operationId === 'string' ? `${operation.operationId}Alias` : undefined
    aliases[alias] = {
      [verb]: {
        ...operation,
        ...(operationId === undefined ? {} : { operationId }),
        summary: `Alias of ${method} ${target}`
      }
    }
  }
  return aliases
}

export interface MergeOptions {
  /** `PUBLIC_URL`: the one server. */
  publicUrl: string
  /** The access rules the gateway runs with: each operation's `x-access` and credentials. */
  rules: readonly AccessRule[]
}

/**
 * One document: the gateway's routes (as @fastify/swagger made it) and better-auth's at their public
 * paths. A path both have keeps the gateway's operation for a method both answer (the gateway's route
 * is the one that runs).
 */
export function mergeDocuments (gateway: OpenApiDocument, betterAuth: OpenApiDocument, options: MergeOptions): JsonObject {
  const auth = betterAuthPaths(betterAuth, options.rules)
  const own: Record<string, Record<string, JsonObject>> = {}
  for (const [path, item] of Object.entries(gateway.paths)) {
    own[path] = Object.fromEntries(Object.entries(item).map(([method, operation]) => [method, withAccess({ ...operation, responses: withDefaultErrors(operation.responses) }, method, path, options.rules)]))
  }
  const paths: Record<string, Record<string, JsonObject>> = { ...aliasPaths(auth) }
  for (const source of [auth, own]) {
    for (const [path, item] of Object.entries(source)) paths[path] = { ...paths[path], ...item }
  }
  const used = new Set<string>()
  for (const item of Object.values(paths)) {
    for (const operation of Object.values(item)) if (Array.isArray(operation.tags)) for (const tag of operation.tags) if (typeof tag === 'string') used.add(tag)
  }
  const tags: Json[] = [...used].sort(compare).map((name): Json => TAGS[name] === undefined ? { name } : { name, description: TAGS[name] })
  const schemas: JsonObject = { ...betterAuth.components?.schemas, ...gateway.components?.schemas, [ERROR_SCHEMA]: ERROR_BODY }
  return {
    openapi: OPENAPI_VERSION,
    info: gateway.info,
    servers: [{ url: options.publicUrl }],
    tags,
    paths: sortedKeys(paths as JsonObject),
    components: sortedKeys({ schemas, responses: { [ERROR_SCHEMA]: { description: 'An error', content: { 'application/json': { schema: ERROR_REF } } } }, securitySchemes: SECURITY_SCHEMES })
  }
}

/** The document as `docs/openapi.json` holds it and `GET /openapi.json` answers it. */
export function documentText (document: JsonObject): string {
  return `${JSON.stringify(document, null, 2)}\n`
}
