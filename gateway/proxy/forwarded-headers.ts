import { REQUEST_ID_HEADER } from '../../shared/request-id.ts'
import type { IncomingHttpHeaders } from 'node:http'

// Hop-by-hop headers (RFC 9110 §7.6.1) and the ones undici sets itself.
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'content-length',
  'expect'
])

/*
 * What a client may tell an upstream, by allowlist: a header not named here never leaves the gateway,
 * so identity headers an upstream or its framework might trust (`Remote-User`, `X-Forwarded-Groups`,
 * `X-Amzn-Oidc-Identity`, `CF-Connecting-IP`, `Impersonate-User`, and names nobody has thought of yet)
 * cannot be smuggled in. The gateway adds its own after these: `X-Forwarded-*`, and for a signed-in
 * caller `Authorization` and `X-User-Id` (and `X-Api-Key-Id` for a call made with an API key, whose
 * key itself never leaves the gateway).
 */
const CONTENT = ['content-type', 'content-encoding', 'content-language'] as const
const NEGOTIATION = ['accept', 'accept-encoding', 'accept-language'] as const
const BROWSER = ['user-agent', 'origin', 'referer'] as const
// Not `X-Request-Id`: the gateway sends the request's own (shared/request-id.ts), which a client does not choose.
// Not `baggage`: a client's key/values (`user.id=admin`) are no upstream's to believe.
const TRACING = ['traceparent', 'tracestate'] as const
const CONDITIONAL = ['if-none-match', 'if-modified-since', 'if-match', 'if-unmodified-since', 'cache-control', 'range', 'if-range'] as const

/** The client headers the RAG and app upstreams receive. */
export const UPSTREAM_REQUEST_HEADERS: ReadonlySet<string> = new Set([...CONTENT, ...NEGOTIATION, ...BROWSER, ...TRACING, ...CONDITIONAL])

/**
 * The client headers auth-core receives: the session cookie, what better-auth's origin and CSRF
 * checks read (`Origin`, `Referer`, `Sec-Fetch-*`), the body's type, and tracing.
 */
export const AUTH_CORE_REQUEST_HEADERS: ReadonlySet<string> = new Set([
  'cookie', 'content-type', ...NEGOTIATION, ...BROWSER, 'sec-fetch-site', 'sec-fetch-mode', 'sec-fetch-dest', ...TRACING
])

const NOTHING_LISTED: ReadonlySet<string> = new Set()

/** The names a sender listed in `Connection`: hop-by-hop by its own declaration, so never passed on. */
function connectionListed (connection: string | string[] | undefined): ReadonlySet<string> {
  if (connection === undefined || connection === 'keep-alive' || connection === 'close') return NOTHING_LISTED
  const listed = new Set<string>()
  for (const value of Array.isArray(connection) ? connection : [connection]) {
    for (const name of value.split(',')) listed.add(name.trim().toLowerCase())
  }
  return listed
}

export interface GatewayFacts {
  clientIp: string
  host: string
  protocol: string
  /** For a signed-in caller: the identity token and user id the gateway vouches for, and the API key's id when it came with one. */
  identity: { token: string, userId: string, apiKeyId?: string } | null
  /** The request's id (`X-Request-Id`). */
  requestId: string
}

/** The client's headers named in `allowed` (names arrive lower-cased from Node), nothing else. */
export function allowedHeaders (client: IncomingHttpHeaders, allowed: ReadonlySet<string>): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {}
  for (const name of Object.keys(client)) {
    const value = client[name]
    if (value !== undefined && allowed.has(name)) headers[name] = value
  }
  return headers
}

/**
 * The headers the RAG or app upstream receives: the allowed client headers, then the ones the
 * gateway vouches for (added last, so no client header can stand in for them).
 */
export function upstreamRequestHeaders (client: IncomingHttpHeaders, facts: GatewayFacts): Record<string, string | string[]> {
  const headers = allowedHeaders(client, UPSTREAM_REQUEST_HEADERS)
  headers['x-forwarded-for'] = facts.clientIp
  headers[REQUEST_ID_HEADER] = facts.requestId
  headers['x-forwarded-host'] = facts.host
  headers['x-forwarded-proto'] = facts.protocol
  if (facts.identity !== null) {
    headers.authorization = `Bearer ${facts.identity.token}`
    headers['x-user-id'] = facts.identity.userId
    if (facts.identity.apiKeyId !== undefined) headers['x-api-key-id'] = facts.identity.apiKeyId
  }
  return headers
}

type ResponseHeaders = Record<string, string | string[] | undefined>

function responseHeaders (upstream: ResponseHeaders, dropped: ReadonlySet<string>): Record<string, string | string[]> {
  const listed = connectionListed(upstream.connection)
  const headers: Record<string, string | string[]> = {}
  for (const name of Object.keys(upstream)) {
    const value = upstream[name]
    if (value === undefined || dropped.has(name) || listed.has(name)) continue
    headers[name] = value
  }
  return headers
}

const RESPONSE_DROPPED = new Set([...HOP_BY_HOP, 'set-cookie'])

/** The RAG or app upstream's response headers the client sees: no hop-by-hop, no cookies on the gateway's origin. */
export function clientResponseHeaders (upstream: ResponseHeaders): Record<string, string | string[]> {
  return responseHeaders(upstream, RESPONSE_DROPPED)
}

/** Auth-core's response headers: everything but hop-by-hop (its `Set-Cookie` is the session). */
export function authResponseHeaders (upstream: ResponseHeaders): Record<string, string | string[]> {
  return responseHeaders(upstream, HOP_BY_HOP)
}
