/** Who may call a route: anyone, a signed-in caller, or a signed-in caller with a role. */
export type Access = 'public' | 'session' | `role:${string}`

export type RuleMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | '*'

export interface AccessRule {
  /** `'*'`: every method the route accepts. `HEAD` is decided by the `GET` rule. */
  readonly methods: readonly RuleMethod[]
  /** A route pattern as registered on the gateway: exact (`/api/v1/query`), with parameters (`/api/v1/sessions/:id`) or a prefix (`/api/*`). */
  readonly path: string
  readonly access: Access
}

/**
 * The whole access policy in one place. Every route registered on the gateway must match
 * exactly one rule, or the gateway refuses to start; a request no rule allows is denied.
 * To add a route: register it, add its rule here, and add a case to the access tests.
 */
export const DEFAULT_RULES = [
  { methods: ['GET'], path: '/health', access: 'public' },
  { methods: ['GET'], path: '/ready', access: 'public' },
  // The API reference, with API_DOCS (without it the routes do not exist: 404).
  { methods: ['GET'], path: '/openapi.json', access: 'public' },
  { methods: ['GET'], path: '/docs', access: 'public' },
  { methods: ['*'], path: '/auth', access: 'public' },
  { methods: ['*'], path: '/auth/*', access: 'public' },
  { methods: ['GET'], path: '/auth/jwt', access: 'session' },
  { methods: ['GET'], path: '/auth/me', access: 'session' },
  // Token clients: the credentials, the refresh token or the access token are the proof, checked by the routes.
  { methods: ['POST'], path: '/auth/login', access: 'public' },
  { methods: ['POST'], path: '/auth/signup', access: 'public' },
  { methods: ['POST'], path: '/auth/token/refresh', access: 'public' },
  { methods: ['POST'], path: '/auth/logout', access: 'public' },
  { methods: ['*'], path: '/auth/admin', access: 'role:admin' },
  { methods: ['*'], path: '/auth/admin/*', access: 'role:admin' },
  { methods: ['GET'], path: '/auth/jwks', access: 'public' },
  { methods: ['PATCH'], path: '/auth/user/profile', access: 'public' },
  { methods: ['GET'], path: '/api/validate-session', access: 'public' },
  { methods: ['POST'], path: '/api/v1/query', access: 'public' },
  { methods: ['POST'], path: '/api/v1/select', access: 'public' },
  { methods: ['GET', 'POST', 'DELETE'], path: '/api/v1/profile', access: 'session' },
  { methods: ['GET'], path: '/api/v1/profile/export', access: 'session' },
  { methods: ['GET'], path: '/api/v1/admin/audit', access: 'role:admin' },
  { methods: ['GET'], path: '/api/v1/sessions', access: 'session' },
  { methods: ['DELETE'], path: '/api/v1/sessions/:id', access: 'session' },
  { methods: ['*'], path: '/api/*', access: 'session' }
] as const satisfies readonly AccessRule[]
