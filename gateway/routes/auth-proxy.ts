import httpProxy from '@fastify/http-proxy'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { IncomingHttpHeaders } from 'node:http'
import { authResponseHeaders } from '../access/upstream-headers.ts'
import { upstreamError } from '../errors.ts'
import { REVOKED_USER_HEADER } from '../../shared/token-revocation.ts'

export const AUTH_PREFIX = '/auth'
export const AUTH_CORE_PREFIX = '/api/auth'

/** Short names of the better-auth endpoints that the docs site's code calls. */
export const AUTH_ALIASES: Readonly<Record<string, { method: string, target: string }>> = {
  '/auth/signup': { method: 'POST', target: '/auth/sign-up/email' },
  '/auth/signin': { method: 'POST', target: '/auth/sign-in/email' },
  '/auth/signout': { method: 'POST', target: '/auth/sign-out' },
  '/auth/session': { method: 'GET', target: '/auth/get-session' }
}

/** The target of an alias, or the path unchanged. Only the alias's own method is mapped. */
export function resolveAuthAlias (method: string, path: string): string {
  const alias = AUTH_ALIASES[path]
  return alias !== undefined && (alias.method === method || (alias.method === 'GET' && method === 'HEAD')) ? alias.target : path
}

/**
 * The headers the gateway vouches for: the client address it resolved (the socket, or the
 * `X-Forwarded-For` chain only with `TRUST_PROXY`), the public host and protocol.
 */
export function forwardedHeaders (request: Pick<FastifyRequest, 'ip' | 'host' | 'protocol'>, headers: IncomingHttpHeaders): IncomingHttpHeaders {
  return {
    ...headers,
    'x-forwarded-for': request.ip,
    'x-forwarded-host': request.host,
    'x-forwarded-proto': request.protocol
  }
}

export interface AuthProxyOptions {
  authCoreUrl: string
}

/** `* /auth/*` → auth-core `/api/auth/*`: every method, body and query; `Set-Cookie` passed back untouched. */
export default async function authProxy (app: FastifyInstance, options: AuthProxyOptions): Promise<void> {
  await app.register(httpProxy, {
    upstream: options.authCoreUrl,
    prefix: AUTH_PREFIX,
    rewritePrefix: AUTH_CORE_PREFIX,
    httpMethods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
    undici: {
      connections: 64,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      connectTimeout: 1_000,
      headersTimeout: 10_000,
      bodyTimeout: 10_000
    },
    replyOptions: {
      rewriteRequestHeaders: forwardedHeaders,
      rewriteHeaders: (headers) => {
        // auth-core revoked every token of this user: forget what this replica cached of them
        // before the answer leaves, so the client's next request is already refused.
        const revoked = headers[REVOKED_USER_HEADER]
        if (typeof revoked === 'string') app.identities.evictUser(revoked)
        const forwarded = authResponseHeaders(headers)
        delete forwarded[REVOKED_USER_HEADER]
        return { ...forwarded, 'cache-control': 'no-store' }
      },
      onError (reply, { error }) {
        reply.send(upstreamError(error, 'auth'))
      }
    }
  })
}
