import { Pool, util } from 'undici'
import type { Dispatcher } from 'undici'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { IDENTITY_TOKEN_TTL_SECONDS } from '../../shared/jwt.ts'
import type { TokenClaims } from '../../shared/jwt.ts'
import { clientResponseHeaders, upstreamRequestHeaders } from '../access/upstream-headers.ts'
import { isSameSiteWrite } from '../access/csrf.ts'
import { TtlCache } from '../ttl-cache.ts'
import { CsrfRejectedError, RagUpstreamNotConfiguredError, upstreamError } from '../errors.ts'
import type { Identity } from '../plugins/identity.ts'

export const RAG_ROUTES = ['/api/v1/query', '/api/v1/select'] as const
export const APP_ROUTE = '/api/*'
/** @default 30 s: a RAG answer may take a while; a dead upstream still fails fast on connect. */
export const DEFAULT_UPSTREAM_TIMEOUT_MS = 30_000
const CONNECT_TIMEOUT_MS = 2_000
const APP_BODY_LIMIT = 1024 * 1024
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS'])
// Re-sign an identity token once less than this much of its life is left.
const TOKEN_REUSE_MARGIN_MS = 60_000

export interface UpstreamRoutesOptions {
  ragUpstreamUrl: string | undefined
  appUpstreamUrl: string | undefined
  /** Origins cookie-authenticated writes to the app upstream may come from (ALLOWED_ORIGINS + PUBLIC_URL). */
  writeOrigins: ReadonlySet<string>
  /** Headers and body timeout of an upstream call. @default 30000 */
  timeoutMs?: number
}

function createUpstreamPool (url: string, timeoutMs: number): Pool {
  return new Pool(url, {
    connections: 128,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    connectTimeout: CONNECT_TIMEOUT_MS,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs
  })
}

/**
 * Identity tokens for upstreams, signed with `JWT_SECRET` and reused while the same claims hold:
 * one HMAC per user every few minutes instead of one per request.
 */
class IdentityTokens {
  readonly #app: FastifyInstance
  readonly #cache = new TtlCache<string, string>(IDENTITY_TOKEN_TTL_SECONDS * 1000 - TOKEN_REUSE_MARGIN_MS)

  constructor (app: FastifyInstance) {
    this.#app = app
  }

  async for (identity: Identity): Promise<string> {
    const claims: TokenClaims = { email: identity.email, name: identity.name, ...identity.claims }
    for (const provider of this.#app.identityClaimProviders) Object.assign(claims, await provider(identity))
    const key = `${identity.userId}\n${JSON.stringify(claims)}`
    const cached = this.#cache.get(key)
    if (cached !== undefined) return cached
    const { token } = await this.#app.jwtKeys.sign(identity.userId, claims, IDENTITY_TOKEN_TTL_SECONDS)
    // Reused until a minute before it expires, so an upstream never receives a nearly dead token.
    this.#cache.set(key, token)
    return token
  }
}

interface UpstreamAnswer {
  statusCode: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
}

/**
 * One buffered upstream call through undici's dispatcher: the answer's chunks are collected as they
 * arrive, without the stream and body mixin of `pool.request()` (the largest cost of a small proxied call).
 */
function call (pool: Pool, options: Dispatcher.DispatchOptions): Promise<UpstreamAnswer> {
  return new Promise((resolve, reject) => {
    let statusCode = 0
    let headers: UpstreamAnswer['headers'] = {}
    const chunks: Buffer[] = []
    // undici's pools take the callback handler; `onHeaders` repeats for informational (1xx) answers.
    pool.dispatch(options, {
      onConnect () {},
      onHeaders (status, rawHeaders) {
        if (status < 200) return true
        statusCode = status
        headers = util.parseHeaders(rawHeaders)
        return true
      },
      onData (chunk) {
        chunks.push(chunk)
        return true
      },
      onComplete () {
        resolve({ statusCode, headers, body: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks) })
      },
      onError (err) {
        reject(err)
      }
    })
  })
}

async function forward (tokens: IdentityTokens, pool: Pool, name: string, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  const identity = request.identity
  const token = identity === null ? null : await tokens.for(identity)
  const headers = upstreamRequestHeaders(request.headers, {
    clientIp: request.ip,
    host: request.host,
    protocol: request.protocol,
    identity: identity === null || token === null ? null : { token, userId: identity.userId }
  })
  let answer: UpstreamAnswer
  try {
    // `request.url` is the normalised target the access policy decided on: nothing else is sent.
    answer = await call(pool, {
      method: request.method as Dispatcher.HttpMethod,
      path: request.url,
      headers,
      body: Buffer.isBuffer(request.body) ? request.body : undefined
    })
  } catch (err) {
    throw upstreamError(err, name)
  }
  return reply.code(answer.statusCode).headers(clientResponseHeaders(answer.headers)).send(answer.body)
}

/** Buffers bodies (they are small) so the upstream gets exactly what was checked, with a length. */
function bufferBodies (scope: FastifyInstance, contentTypes: string | string[], validateJson: boolean): void {
  scope.removeAllContentTypeParsers()
  scope.addContentTypeParser(contentTypes, { parseAs: 'buffer' }, (_request, body, done) => {
    if (validateJson) {
      try {
        JSON.parse(body.toString('utf8'))
      } catch {
        const err = new Error('The request body is not valid JSON') as Error & { statusCode: number, code: string }
        err.statusCode = 400
        err.code = 'INVALID_JSON'
        done(err, undefined)
        return
      }
    }
    done(null, body)
  })
}

/**
 * `POST /api/v1/query|select` → RAG upstream (public, identity attached when signed in) and every
 * other `/api/*` → app upstream (session required by the access policy).
 */
export default async function upstreamRoutes (app: FastifyInstance, options: UpstreamRoutesOptions): Promise<void> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_UPSTREAM_TIMEOUT_MS
  const tokens = new IdentityTokens(app)
  const rag = options.ragUpstreamUrl === undefined ? undefined : createUpstreamPool(options.ragUpstreamUrl, timeoutMs)
  const appUpstream = options.appUpstreamUrl === undefined ? undefined : createUpstreamPool(options.appUpstreamUrl, timeoutMs)
  app.addHook('onClose', async () => {
    await Promise.all([rag?.close(), appUpstream?.close()])
  })

  await app.register(async function ragScope (scope) {
    bufferBodies(scope, 'application/json', true)
    for (const url of RAG_ROUTES) {
      scope.post(url, { config: { identity: 'optional' } }, async (request, reply) => {
        if (rag === undefined) throw new RagUpstreamNotConfiguredError()
        return forward(tokens, rag, 'rag', request, reply)
      })
    }
  })

  // Without an app upstream there is no `/api/*` route at all: such paths answer 404.
  if (appUpstream === undefined) return
  await app.register(async function appScope (scope) {
    bufferBodies(scope, '*', false)
    scope.route({
      method: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'],
      url: APP_ROUTE,
      bodyLimit: APP_BODY_LIMIT,
      // A cookie rides along on a cross-site form post: state changes need an allowed origin.
      preValidation: async (request) => {
        if (SAFE_METHODS.has(request.method) || request.identity === null) return
        if (!isSameSiteWrite(request, request.identity, options.writeOrigins)) throw new CsrfRejectedError()
      },
      handler: async (request, reply) => forward(tokens, appUpstream, 'app', request, reply)
    })
  })
}
