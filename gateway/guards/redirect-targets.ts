/*
 * Which redirect targets better-auth may be asked to send a browser to. better-auth checks a callback
 * before `new URL()` removes its dot segments, so `/x/..//evil.com` passed its check and came back as
 * `Location: //evil.com`. The gateway decides on the URL as a browser will resolve it.
 */

/** Parameters of better-auth endpoints that name where the browser goes next (query or body). */
export const REDIRECT_PARAMETERS: ReadonlySet<string> = new Set(['callbackURL', 'redirectTo', 'newUserCallbackURL', 'errorCallbackURL'])

// Backslashes (browsers read them as slashes), control characters and white space.
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\\\u0000-\u0020\u007f]/
// As sent, a target is printable ASCII (anything else percent-encoded, as browsers send `location.href`):
// better-auth writes it into `Location`, where a raw U+3002 was a 500.
const NOT_ASCII = /[^\u0021-\u007e]/

/**
 * Whether a redirect target resolves to the gateway's own origin or an allowed origin, after the
 * URL parser has removed dot segments and decoded what it decodes. A path must stay a path: one that
 * resolves to `//host` is protocol-relative to a browser and is refused. The empty string means
 * "no redirect" and is allowed.
 */
export function isAllowedRedirect (target: string, publicUrl: string, allowedOrigins: ReadonlySet<string>): boolean {
  if (target === '') return true
  // The path as a browser would decode it; a query may carry any encoded text.
  let decoded: string
  try {
    decoded = decodeURIComponent(target.split(/[?#]/, 1)[0])
  } catch {
    return false
  }
  if (UNSAFE.test(target) || NOT_ASCII.test(target) || UNSAFE.test(decoded)) return false
  const relative = target.startsWith('/')
  if (!relative && !/^https?:\/\//i.test(target)) return false
  let url: URL
  try {
    url = new URL(target, publicUrl)
  } catch {
    return false
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return false
  if (url.pathname.startsWith('//') || url.username !== '' || url.password !== '') return false
  const publicOrigin = new URL(publicUrl).origin
  if (relative) return url.origin === publicOrigin
  return url.origin === publicOrigin || allowedOrigins.has(url.origin)
}

/** Every value of a redirect parameter in a decoded body or query, at any depth. */
export function redirectValues (input: unknown, found: unknown[] = [], depth = 0): unknown[] {
  if (depth > 8 || input === null || typeof input !== 'object') return found
  for (const [key, value] of Object.entries(input)) {
    if (REDIRECT_PARAMETERS.has(key)) found.push(...(Array.isArray(value) ? value : [value]))
    else if (typeof value === 'object') redirectValues(value, found, depth + 1)
  }
  return found
}

/** The first redirect value that is not an allowed target (a non-string counts), or undefined when all are allowed. */
export function refusedRedirect (values: readonly unknown[], publicUrl: string, allowedOrigins: ReadonlySet<string>): string | undefined {
  for (const value of values) {
    if (typeof value !== 'string' || !isAllowedRedirect(value, publicUrl, allowedOrigins)) return typeof value === 'string' ? value : JSON.stringify(value)
  }
  return undefined
}
