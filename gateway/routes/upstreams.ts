import { Pool, util } from 'undici'
import type { Dispatcher } from 'undici'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { createHmac, hkdfSync } from 'node:crypto'
import { EdDsaSigner, IDENTITY_TOKEN_TTL_SECONDS, IDENTITY_TOKEN_TYPE, JwtKeys } from '../../shared/jwt.ts'
import type { TokenClaims, TokenSigner } from '../../shared/jwt.ts'
import type { UpstreamName, UpstreamTokenConfig } from '../../shared/config.ts'
import { clientResponseHeaders, upstreamRequestHeaders } from '../proxy/forwarded-headers.ts'
import { clientAddress, publicFacts } from '../client-address.ts'
import type { PublicFacts } from '../client-address.ts'
import { isSameSiteWrite } from '../guards/csrf.ts'
import { TtlCache } from '../ttl-cache.ts'
import { CsrfRejectedError, RagUpstreamNotConfiguredError, upstreamError } from '../errors.ts'
import type { Identity } from '../identity/identity-resolver.ts'
import { APP_ROUTE, RAG_ROUTES } from '../route-paths.ts'

/** @default 30 s: a RAG answer may take a while; a dead upstream still fails fast on connect. */
export const DEFAULT_UPSTREAM_TIMEOUT_MS = 30_000
const CONNECT_TIMEOUT_MS = 2_000
const APP_BODY_LIMIT = 1024 * 1024
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS'])
// An identity token is reused until this much of its life is left, then signed again.
const TOKEN_REUSE_MARGIN_MS = 60_000
const TOKEN_REUSE_MS = IDENTITY_TOKEN_TTL_SECONDS * 1000 - TOKEN_REUSE_MARGIN_MS

export interface UpstreamRoutesOptions {
  ragUpstreamUrl: string | undefined
  appUpstreamUrl: string | undefined
  /** Origins cookie-authenticated writes to the app upstream may come from (ALLOWED_ORIGINS + PUBLIC_URL). */
  writeOrigins: ReadonlySet<string>
  /** Headers and body timeout of an upstream call. @default 30000 */
  timeoutMs?: number
  /** How each upstream's identity tokens are signed and whom they name. */
  upstreamTokens: Readonly<Record<UpstreamName, UpstreamTokenConfig>>
  /** `JWT_SECRET`: the pseudonymous subjects are keyed with a key derived from it. */
  jwtSecret: string
  /** `PUBLIC_URL`: its host and protocol are the `X-Forwarded-Host`/`-Proto` upstreams receive. */
  publicUrl: string
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

interface IssuedToken {
  /** What each claim provider answered when the token was signed (compared by reference). */
  extras: readonly TokenClaims[]
  upstream: UpstreamIdentity
  reuseUntil: number
}

/** What an upstream learns of a signed-in caller: its token and the `X-User-Id` to send beside it. */
export interface UpstreamIdentity {
  token: string
  userId: string
}

/**
 * A keyed hash of user and audience: stable for one user at one upstream, unlinkable across
 * upstreams and to accounts without `JWT_SECRET`.
 */
export function pseudonymousSubjects (jwtSecret: string): (userId: string, audience: string) => string {
  const key = Buffer.from(hkdfSync('sha256', jwtSecret, 'auth-gateway', 'pseudonymous subject v1', 32))
  return (userId, audience) => createHmac('sha256', key).update(`${audience}\n${userId}`).digest('base64url')
}

/**
 * Identity tokens for one upstream, bound to it: signed with its own HS256 secret, or EdDSA with
 * `aud` = its name. Reused while the same claims hold: one signature per user every few minutes
 * instead of one per request. A cached identity whose claim providers answer with the very objects
 * they answered last time gets its token back at once, without serialising the claims again.
 */
class IdentityTokens {
  readonly #app: FastifyInstance
  readonly #audience: UpstreamName
  readonly #signer: TokenSigner
  readonly #subject: ((userId: string) => string) | null
  readonly #signed = new TtlCache<string, { token: string, reuseUntil: number }>(TOKEN_REUSE_MS)
  readonly #issued = new WeakMap<Identity, IssuedToken>()

  constructor (app: FastifyInstance, audience: UpstreamName, config: UpstreamTokenConfig, pseudonym: (userId: string, audience: string) => string) {
    this.#app = app
    this.#audience = audience
    this.#signer = config.jwtSecret === undefined ? new EdDsaSigner(app.keyRing, 'identity', audience) : new JwtKeys(config.jwtSecret, IDENTITY_TOKEN_TYPE)
    this.#subject = config.subject === 'pseudonymous' ? (userId) => pseudonym(userId, audience) : null
  }

  for (identity: Identity): UpstreamIdentity | Promise<UpstreamIdentity> {
    const extras = this.#app.identityClaimProviders.map((provider) => provider(identity))
    if (extras.some((extra) => extra instanceof Promise)) return Promise.all(extras).then((resolved) => this.#token(identity, resolved))
    return this.#token(identity, extras as TokenClaims[])
  }

  #token (identity: Identity, extras: readonly TokenClaims[]): UpstreamIdentity | Promise<UpstreamIdentity> {
    const issued = this.#issued.get(identity)
    if (issued !== undefined && issued.reuseUntil > Date.now() && issued.extras.length === extras.length && issued.extras.every((extra, i) => extra === extras[i])) {
      return issued.upstream
    }
    const subject = this.#subject === null ? identity.userId : this.#subject(identity.userId)
    // A pseudonymous upstream gets no direct identifier: no email, no name.
    const named = this.#subject === null ? { email: identity.email, name: identity.name } : {}
    const claims: TokenClaims = Object.assign(named, identity.claims, ...extras)
    const key = `${subject}\n${JSON.stringify(claims)}`
    const remember = (signed: { token: string, reuseUntil: number }): UpstreamIdentity => {
      const upstream = { token: signed.token, userId: subject }
      this.#issued.set(identity, { extras, upstream, reuseUntil: signed.reuseUntil })
      return upstream
    }
    const cached = this.#signed.get(key)
    if (cached !== undefined) return remember(cached)
    return this.#signer.sign(subject, claims, IDENTITY_TOKEN_TTL_SECONDS).then(({ token, expiresAt }) => {
      // Reused until a minute before it expires, so an upstream never receives a nearly dead token.
      const signed = { token, reuseUntil: expiresAt.getTime() - TOKEN_REUSE_MARGIN_MS }
      this.#signed.set(key, signed)
      return remember(signed)
    })
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

async function forward (tokens: IdentityTokens, pool: Pool, name: string, origin: PublicFacts, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  const identity = request.identity
  const issued = identity === null ? null : tokens.for(identity)
  const upstreamIdentity = issued instanceof Promise ? await issued : issued
  const headers = upstreamRequestHeaders(request.headers, {
    clientIp: clientAddress(request),
    // Not `request.host`/`protocol`: under TRUST_PROXY those are the client's X-Forwarded-Host/-Proto.
    host: origin.host,
    protocol: origin.protocol,
    identity: upstreamIdentity
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
  const pseudonym = pseudonymousSubjects(options.jwtSecret)
  const origin = publicFacts(options.publicUrl)
  const ragTokens = new IdentityTokens(app, 'rag', options.upstreamTokens.rag, pseudonym)
  const appTokens = new IdentityTokens(app, 'app', options.upstreamTokens.app, pseudonym)
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
        return forward(ragTokens, rag, 'rag', origin, request, reply)
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
      handler: async (request, reply) => forward(appTokens, appUpstream, 'app', origin, request, reply)
    })
  })
}
