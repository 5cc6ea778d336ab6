import { Counter, Gauge, Histogram } from 'prom-client'
import type { Registry } from 'prom-client'
import { DURATION_BUCKETS } from '../shared/metrics.ts'

/**
 * What the gateway counts beyond its requests (`METRICS_PORT`, docs/operations.md#metrics). Every
 * label value is one of a fixed set (a group, an upstream's name, an error code), never taken from a
 * request.
 */
export class GatewayMetrics {
  /** Requests refused 429, by budget. */
  readonly rateLimited: Counter<'group'>
  /** Requests the access policy refused: 401 (no valid caller) or 403. */
  readonly policyRefusals: Counter<'status'>
  /** Sign-up, sign-in, sign-out, revocations and bans through the gateway, by outcome. */
  readonly authEvents: Counter<'event' | 'outcome'>
  /** From the call to the upstream's headers (a streamed answer's first byte), by upstream and status. */
  readonly upstreamDuration: Histogram<'upstream' | 'status'>
  /** Upstream calls that ended without an answer, by upstream and error code. */
  readonly upstreamErrors: Counter<'upstream' | 'error'>
  /** Cache reads, by cache and hit or miss. */
  readonly cacheReads: Counter<'cache' | 'result'>
  /** Session look-ups in auth-core (cache misses), by outcome. */
  readonly authCoreLookups: Counter<'outcome'>
  readonly #registry: Registry

  constructor (registry: Registry) {
    this.#registry = registry
    const registers = [registry]
    this.rateLimited = new Counter({ name: 'gateway_rate_limited_total', help: 'Requests refused with 429, by rate-limit group', labelNames: ['group'], registers })
    this.policyRefusals = new Counter({ name: 'gateway_policy_refusals_total', help: 'Requests the access policy refused, by status (401, 403)', labelNames: ['status'], registers })
    this.authEvents = new Counter({ name: 'gateway_auth_events_total', help: 'Account events through the gateway, by event and outcome', labelNames: ['event', 'outcome'], registers })
    this.upstreamDuration = new Histogram({ name: 'gateway_upstream_duration_seconds', help: 'Upstream calls, from the call to the answer\'s headers, by upstream and status', labelNames: ['upstream', 'status'], buckets: [...DURATION_BUCKETS], registers })
    this.upstreamErrors = new Counter({ name: 'gateway_upstream_errors_total', help: 'Upstream calls that ended without an answer, by upstream and error code', labelNames: ['upstream', 'error'], registers })
    this.cacheReads = new Counter({ name: 'gateway_cache_reads_total', help: 'Cache reads, by cache (session, bearer, identity_token) and result (hit, miss)', labelNames: ['cache', 'result'], registers })
    this.authCoreLookups = new Counter({ name: 'gateway_auth_core_lookups_total', help: 'Session look-ups in auth-core, by outcome', labelNames: ['outcome'], registers })
  }

  /** `gateway_redis_up`, read from `up` at each scrape: only with `REDIS_URL` (absent, not 0, without it). */
  watchRedis (up: () => boolean): void {
    new Gauge({ // eslint-disable-line no-new
      name: 'gateway_redis_up',
      help: '1 while Redis answers (rate limits shared by the replicas), 0 while they are counted per replica',
      registers: [this.#registry],
      collect () { this.set(up() ? 1 : 0) }
    })
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The gateway's counters when `METRICS_PORT` is set, else null. */
    metrics: GatewayMetrics | null
  }
}
