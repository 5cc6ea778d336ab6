import { Histogram } from 'prom-client'
import type { Registry } from 'prom-client'
import { DURATION_BUCKETS, UNMATCHED_ROUTE } from '../shared/metrics.ts'

/**
 * The endpoint a better-auth path names, as better-auth declares it (`/sign-in/email`,
 * `/reset-password/:token`), or `UNMATCHED_ROUTE`: a label is never a path a client made up.
 */
export function endpointMatcher (paths: Iterable<string | undefined>): (path: string) => string {
  const exact = new Set<string>()
  const patterns: Array<{ endpoint: string, segments: string[] }> = []
  for (const path of paths) {
    // A few of better-auth's `api` functions are not endpoints (no path).
    if (typeof path !== 'string') continue
    if (path.includes('/:')) patterns.push({ endpoint: path, segments: path.split('/') })
    else exact.add(path)
  }
  return (path) => {
    if (exact.has(path)) return path
    const segments = path.split('/')
    const found = patterns.find((pattern) => pattern.segments.length === segments.length &&
      pattern.segments.every((segment, i) => segment.startsWith(':') ? segments[i] !== '' : segment === segments[i]))
    return found?.endpoint ?? UNMATCHED_ROUTE
  }
}

/** auth-core's own figures beyond its requests: each better-auth endpoint's calls and time (a sign-in's scrypt shows here). */
export class AuthCoreMetrics {
  readonly endpoints: Histogram<'endpoint' | 'method' | 'status'>

  constructor (registry: Registry) {
    this.endpoints = new Histogram({
      name: 'auth_core_endpoint_duration_seconds',
      help: 'better-auth endpoint calls, by endpoint (as better-auth declares it), method and status',
      labelNames: ['endpoint', 'method', 'status'],
      buckets: [...DURATION_BUCKETS],
      registers: [registry]
    })
  }
}
