/*
 * The paths the gateway's routes are registered on, as data: stages and plugins refer to routes
 * through these, never by importing a route module.
 */
export const AUTH_PREFIX = '/auth'
/** better-auth's admin plugin: a route of its own, for a rule of its own. */
export const AUTH_ADMIN_PREFIX = '/auth/admin'
export const ADMIN_AUDIT_ROUTE = '/api/v1/admin/audit'
export const SESSIONS_ROUTE = '/api/v1/sessions'
/** Where auth-core serves better-auth. */
export const AUTH_CORE_PREFIX = '/api/auth'
/**
 * Who a cookie or bearer token belongs to: served by the gateway and by auth-core on the same path.
 * auth-core's answers the gateway's session look-ups (better-auth's getSession called directly,
 * without the HTTP handler's routing and Request/Response round trip).
 */
export const VALIDATE_SESSION_PATH = '/api/validate-session'
export const VERIFY_API_KEY_PATH = '/api/verify-api-key'
/** The signed-in caller, for clients: like validate-session, but 401 when there is none. */
export const ME_ROUTE = '/auth/me'
/** Token clients (no cookie): sign-in, rotation, logout of one login. */
export const LOGIN_ROUTE = '/auth/login'
export const REFRESH_ROUTE = '/auth/token/refresh'
export const LOGOUT_ROUTE = '/auth/logout'
/** `/auth/signup` as a token client's sign-up: routed so only for a request without `Origin` (else the cookie alias). */
export const TOKEN_SIGNUP_ROUTE = '/auth/signup'
export const RAG_ROUTES = ['/api/v1/query', '/api/v1/select'] as const
export const APP_ROUTE = '/api/*'
/** The API reference (`API_DOCS`): the OpenAPI document and its page. */
export const OPENAPI_ROUTE = '/openapi.json'
export const DOCS_ROUTE = '/docs'
/** Where auth-core serves better-auth's OpenAPI document (internal: not under `/api/auth`). */
export const AUTH_CORE_OPENAPI_PATH = '/openapi.json'

/** Short names of the better-auth endpoints that the docs site's code calls. */
export const AUTH_ALIASES: Readonly<Record<string, { method: string, target: string }>> = {
  '/auth/signup': { method: 'POST', target: '/auth/sign-up/email' },
  '/auth/signin': { method: 'POST', target: '/auth/sign-in/email' },
  '/auth/signout': { method: 'POST', target: '/auth/sign-out' },
  '/auth/session': { method: 'GET', target: '/auth/get-session' }
}
