/**
 * One canonical form of a request target, computed once: the router, the access policy, the rate
 * limiter and the upstream all see this path and nothing else.
 */
export type Normalised =
  | { ok: true, path: string, query: string }
  | { ok: false, reason: string }

// RFC 3986 unreserved characters: decoding them never changes what a path means.
const UNRESERVED = /^[A-Za-z0-9\-._~]$/
const PROTECTED_PREFIXES = ['/api', '/auth']

function reject (reason: string): Normalised {
  return { ok: false, reason }
}

// Already canonical: nothing to decode, no dot segments, no doubled slashes, nothing to refuse.
const PLAIN_PATH = /^(?:\/[A-Za-z0-9\-_~]+(?:\.[A-Za-z0-9\-_~]+)*)+\/?$|^\/$/

/**
 * Normalises a raw request target (`req.url`): absolute-form reduced to its path, fragment dropped,
 * unreserved characters percent-decoded, duplicate slashes collapsed, dot segments removed.
 * Rejects what different parsers read differently: encoded slashes and backslashes, backslashes,
 * NUL and control characters, encoded dot segments, `;` parameters under protected prefixes,
 * malformed percent-escapes and anything that is not an origin-form path.
 */
export function normalisePath (target: string): Normalised {
  const queryAt = target.indexOf('?')
  const hashAt = target.indexOf('#')
  if (hashAt === -1) {
    const pathPart = queryAt === -1 ? target : target.slice(0, queryAt)
    if (PLAIN_PATH.test(pathPart)) return { ok: true, path: pathPart, query: queryAt === -1 ? '' : target.slice(queryAt) }
  }
  return normaliseSlowly(target)
}

/** The full normaliser; `normalisePath` skips it for targets that are already canonical. */
export function normaliseSlowly (target: string): Normalised {
  let raw = target
  if (!raw.startsWith('/')) {
    // Absolute-form (`GET http://host/path HTTP/1.1`): only the path takes part in routing.
    if (!/^https?:\/\//i.test(raw)) return reject('the target must be a path')
    const afterScheme = raw.indexOf('//') + 2
    const slash = raw.indexOf('/', afterScheme)
    const query = raw.indexOf('?', afterScheme)
    const start = slash === -1 || (query !== -1 && query < slash) ? -1 : slash
    raw = start === -1 ? '/' + (query === -1 ? '' : raw.slice(query)) : raw.slice(start)
  }
  const hash = raw.indexOf('#')
  if (hash !== -1) raw = raw.slice(0, hash)
  const queryAt = raw.indexOf('?')
  const query = queryAt === -1 ? '' : raw.slice(queryAt)
  const encoded = queryAt === -1 ? raw : raw.slice(0, queryAt)

  if (encoded.includes('\\')) return reject('backslash in path')
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f\s]/.test(encoded)) return reject('control character in path')

  let decoded = ''
  let encodedDotSegment = false
  for (let i = 0; i < encoded.length; i++) {
    const char = encoded[i]
    if (char !== '%') {
      decoded += char
      continue
    }
    const hex = encoded.slice(i + 1, i + 3)
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return reject('malformed percent-encoding')
    const code = parseInt(hex, 16)
    if (code === 0x2f) return reject('encoded slash (%2F) in path')
    if (code === 0x5c) return reject('encoded backslash (%5C) in path')
    if (code < 0x20 || code === 0x7f) return reject('encoded control character in path')
    const decodedChar = String.fromCharCode(code)
    if (UNRESERVED.test(decodedChar)) {
      if (decodedChar === '.') encodedDotSegment = true
      decoded += decodedChar
    } else {
      // Reserved and non-ASCII bytes stay encoded, in one spelling.
      decoded += `%${hex.toUpperCase()}`
    }
    i += 2
  }

  const segments: string[] = []
  for (const segment of decoded.split('/').slice(1)) {
    if (segment === '' || segment === '.') continue
    if (segment === '..') {
      if (encodedDotSegment) return reject('encoded dot segment in path')
      if (segments.length === 0) return reject('path climbs above the root')
      segments.pop()
      continue
    }
    segments.push(segment)
  }
  const trailingSlash = decoded.length > 1 && decoded.endsWith('/') && segments.length > 0
  const path = '/' + segments.join('/') + (trailingSlash ? '/' : '')
  // Checked before and after dot removal: `/api/v1/query;/../profile` must not launder its `;`.
  if (decoded.includes(';') && PROTECTED_PREFIXES.some((prefix) => path.startsWith(prefix) || decoded.startsWith(prefix) || decoded.startsWith(`/${prefix}`))) {
    return reject('";" parameters are not allowed under /api and /auth')
  }
  return { ok: true, path, query }
}
