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
 * Headers an upstream may read as identity or routing facts: only the gateway speaks them.
 * Compared after `_` → `-`, since WSGI/ASGI servers read `X_User_Id` as `X-User-Id`.
 */
const IDENTITY_HEADERS = new Set([
  'authorization',
  'cookie',
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-forwarded-port',
  'x-forwarded-prefix',
  'x-forwarded-user',
  'x-forwarded-email',
  'x-real-ip',
  'x-remote-user',
  'x-remote-addr',
  'x-original-url',
  'x-original-uri',
  'x-rewrite-url',
  'x-middleware-subrequest',
  'x-http-method-override',
  'x-http-method',
  'x-method-override'
])
const IDENTITY_PREFIXES = ['x-user-', 'x-auth-', 'x-user', 'x-auth']

function classify (name: string): boolean {
  const canonical = name.toLowerCase().replace(/_/g, '-')
  return IDENTITY_HEADERS.has(canonical) || IDENTITY_PREFIXES.some((prefix) => canonical.startsWith(prefix))
}

// Header names repeat from request to request: each is classified once. Bounded, so a client
// sending random names cannot grow it.
const classified = new Map<string, boolean>()
const CLASSIFIED_NAMES = 512

export function isIdentityHeader (name: string): boolean {
  let identity = classified.get(name)
  if (identity === undefined) {
    identity = classify(name)
    if (classified.size < CLASSIFIED_NAMES) classified.set(name, identity)
  }
  return identity
}

const NOTHING_LISTED: ReadonlySet<string> = new Set()

/** The names a client listed in `Connection`: hop-by-hop by its own declaration, so never forwarded. */
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
  /** For a signed-in caller: the identity token and user id the gateway vouches for. */
  identity: { token: string, userId: string } | null
}

/**
 * The headers an upstream receives: the client's, less hop-by-hop, `Connection`-listed and
 * identity headers, plus the ones the gateway adds itself (added last, so a client's
 * `Connection: x-user-id` cannot remove them).
 */
export function upstreamRequestHeaders (client: IncomingHttpHeaders, facts: GatewayFacts): Record<string, string | string[]> {
  const listed = connectionListed(client.connection)
  const headers: Record<string, string | string[]> = {}
  for (const name of Object.keys(client)) {
    const value = client[name]
    if (value === undefined || HOP_BY_HOP.has(name) || listed.has(name) || isIdentityHeader(name)) continue
    headers[name] = value
  }
  headers['x-forwarded-for'] = facts.clientIp
  headers['x-forwarded-host'] = facts.host
  headers['x-forwarded-proto'] = facts.protocol
  if (facts.identity !== null) {
    headers.authorization = `Bearer ${facts.identity.token}`
    headers['x-user-id'] = facts.identity.userId
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
