import swagger from '@fastify/swagger'
import fp from 'fastify-plugin'
import type { FastifyInstance, RouteOptions } from 'fastify'
import { OPENAPI_VERSION } from '../openapi/document.ts'
import { AUTH_ADMIN_PREFIX, AUTH_PREFIX } from '../route-paths.ts'

// The auth proxies' own prefix routes (`/auth`, `/auth/`, …), besides their `/*`.
const PROXY_PREFIXES: ReadonlySet<string> = new Set([AUTH_PREFIX, AUTH_ADMIN_PREFIX])

/*
 * @fastify/swagger, collecting the routes registered after it (so it comes before them). Only the
 * gateway's own routes are documented from here; the catch-alls are not operations: `/auth/*` is
 * documented by better-auth's document (routes/api-docs.ts merges it), `/api/*` is the app upstream's.
 */

/** A route that stands for a family of paths (`/auth/*`, `/api/*`, the bare proxy prefixes, CORS's `*`). */
export function isCatchAll (route: Pick<RouteOptions, 'url'>): boolean {
  return route.url.includes('*') || PROXY_PREFIXES.has(route.url.replace(/\/$/, ''))
}

async function apiDocsPlugin (app: FastifyInstance): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: OPENAPI_VERSION,
      info: {
        title: 'auth-gateway',
        description: 'The gateway\'s own routes and better-auth\'s endpoints under `/auth/*`. Every other `/api/*` path goes to the app upstream (a session required unless `ACCESS_RULES_FILE` says otherwise).',
        version: '1'
      }
    },
    transform: ({ schema, url, route }) => ({ schema: isCatchAll(route) ? { ...schema, hide: true } : schema, url })
  })
}

export default fp(apiDocsPlugin, { name: 'api-docs' })
