import httpProxy from '@fastify/http-proxy'
import { errorCodes } from 'fastify'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { IncomingHttpHeaders } from 'node:http'
import { allowedHeaders, AUTH_CORE_REQUEST_HEADERS, authResponseHeaders } from '../proxy/forwarded-headers.ts'
import { redirectValues, refusedRedirect } from '../guards/redirect-targets.ts'
import { BadRedirectError, InvalidJsonError, upstreamError } from '../errors.ts'
import { clientAddress, publicFacts } from '../client-address.ts'
import type { AddressedRequest } from '../client-address.ts'
import { REQUEST_ID_HEADER } from '../../shared/request-id.ts'
import { REVOKED_API_KEY_HEADER, REVOKED_USER_HEADER } from '../../shared/token-revocation.ts'
import { AUTH_ADMIN_PREFIX, AUTH_CORE_PREFIX, AUTH_PREFIX } from '../route-paths.ts'

// What the proxy itself set for the hop to auth-core (reply-from writes them before the rewrite).
const PROXY_SET = ['host', 'content-length'] as const

/**
 * The headers auth-core receives: the allowed client headers, the hop's own, and the ones the
 * gateway vouches for: the canonical client address (the socket, or the `X-Forwarded-For` chain as
 * far as `TRUST_PROXY` trusts it), and the host and protocol of `PUBLIC_URL` — never a client's
 * `X-Forwarded-Host`/`-Proto`, which Fastify believes under `TRUST_PROXY`. Hop-by-hop headers a
 * client sent (`Keep-Alive`, `Upgrade`) are not among them, so they never reach undici, which refuses them.
 */
export function forwardedHeaders (publicUrl: string): (request: AddressedRequest & { readonly id: string }, headers: IncomingHttpHeaders) => IncomingHttpHeaders {
  const { host, protocol } = publicFacts(publicUrl)
  return (request, headers) => {
    const forwarded: IncomingHttpHeaders = allowedHeaders(headers, AUTH_CORE_REQUEST_HEADERS)
    for (const name of PROXY_SET) if (headers[name] !== undefined) forwarded[name] = headers[name]
    forwarded['x-forwarded-for'] = clientAddress(request)
    forwarded['x-forwarded-host'] = host
    forwarded['x-forwarded-proto'] = protocol
    forwarded[REQUEST_ID_HEADER] = request.id
    return forwarded
  }
}

export interface AuthProxyOptions {
  authCoreUrl: string
  /** Redirect targets must resolve to this origin or to one of `allowedOrigins`. */
  publicUrl: string
  allowedOrigins: readonly string[]
}

// better-call's own test for a JSON body: any `application/…json` media type, by prefix.
const JSON_BODY = /^application\/([a-z0-9.+-]*\+)?json/i
const BODYLESS = new Set(['GET', 'HEAD'])
const UTF8 = new TextDecoder()

/** A query string or form body as name → every value it was given. */
function formValues (encoded: string): Record<string, string[]> {
  const form = new URLSearchParams(encoded)
  return Object.fromEntries([...new Set(form.keys())].map((key) => [key, form.getAll(key)]))
}

/**
 * The request's parameters as better-auth will read them: the query, and the body decoded the way
 * better-call decodes it (JSON by its prefix rule, forms by substring).
 */
function requestParameters (request: FastifyRequest): unknown[] {
  const query = request.url.indexOf('?')
  const found: unknown[] = []
  if (query !== -1) redirectValues(formValues(request.url.slice(query + 1)), found)
  const body = request.body
  if (!Buffer.isBuffer(body) || body.length === 0) return found
  const type = (request.headers['content-type'] ?? '').toLowerCase()
  if (JSON_BODY.test(type)) {
    // Decoded as `Request.json()` decodes (a UTF-8 BOM is dropped); what cannot be read here is not
    // passed on unchecked.
    try {
      redirectValues(JSON.parse(UTF8.decode(body)) as unknown, found)
    } catch {
      throw new InvalidJsonError()
    }
  } else if (type.includes('application/x-www-form-urlencoded')) {
    redirectValues(formValues(body.toString('utf8')), found)
  } else if (type.includes('multipart/form-data')) {
    // No better-auth client sends multipart; refusing it keeps every redirect parameter checkable.
    throw new errorCodes.FST_ERR_CTP_INVALID_MEDIA_TYPE(type)
  }
  return found
}

/** `* /auth/*` → auth-core `/api/auth/*`: every method, body and query; `Set-Cookie` passed back untouched. */
export default async function authProxy (app: FastifyInstance, options: AuthProxyOptions): Promise<void> {
  const allowedOrigins = new Set(options.allowedOrigins)
  // Bodies are read whole (they are small), so the redirect check sees exactly the bytes auth-core gets.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => { done(null, body) })

  // `/auth/admin/*` is a route of its own, so the access policy can give it a rule of its own (`role:admin`).
  for (const [prefix, rewritePrefix] of [[AUTH_PREFIX, AUTH_CORE_PREFIX], [AUTH_ADMIN_PREFIX, `${AUTH_CORE_PREFIX}/admin`]] as const) {
    await registerProxy(app, options, allowedOrigins, prefix, rewritePrefix)
  }
}

async function registerProxy (app: FastifyInstance, options: AuthProxyOptions, allowedOrigins: ReadonlySet<string>, prefix: string, rewritePrefix: string): Promise<void> {
  await app.register(httpProxy, {
    upstream: options.authCoreUrl,
    proxyPayloads: false,
    disableRequestLogging: true,
    preHandler: async function checkRedirectTargets (request) {
      const refused = refusedRedirect(requestParameters(request), options.publicUrl, allowedOrigins)
      if (refused !== undefined) {
        request.log.info({ event: 'redirect_refused', path: request.routeOptions.url }, 'redirect target refused')
        throw new BadRedirectError()
      }
    },
    handler: async (request, reply, dest, handlerOptions) => {
      // The checked bytes, with their own content type (reply-from would re-encode a JSON Buffer).
      const body = !BODYLESS.has(request.method) && Buffer.isBuffer(request.body) ? { body: request.body, contentType: request.headers['content-type'] ?? 'application/octet-stream' } : {}
      return reply.from(dest, { ...handlerOptions, ...body })
    },
    prefix,
    rewritePrefix,
    httpMethods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
    // The one pool to auth-core (reply-from does not close a pool it was given).
    undici: app.authCore,
    replyOptions: {
      rewriteRequestHeaders: forwardedHeaders(options.publicUrl),
      rewriteHeaders: (headers, request) => {
        // auth-core revoked every token of this user: forget what this replica cached of them
        // before the answer leaves, so the client's next request is already refused.
        const revoked = headers[REVOKED_USER_HEADER]
        if (typeof revoked === 'string') {
          app.identities.evictUser(revoked)
          if (request !== undefined) request.tokensRevokedFor = revoked
        }
        // An API key deleted or changed: forgotten the same way.
        const revokedKey = headers[REVOKED_API_KEY_HEADER]
        if (typeof revokedKey === 'string') app.identities.evictApiKey(revokedKey)
        const forwarded = authResponseHeaders(headers)
        delete forwarded[REVOKED_USER_HEADER]
        delete forwarded[REVOKED_API_KEY_HEADER]
        return { ...forwarded, 'cache-control': 'no-store' }
      },
      onError (reply, { error }) {
        const failure = upstreamError(error, 'auth')
        app.metrics?.upstreamErrors.inc({ upstream: 'auth', error: failure.code })
        reply.send(failure)
      }
    }
  })
}
