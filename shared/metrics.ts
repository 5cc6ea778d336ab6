import { createServer } from 'node:http'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { collectDefaultMetrics, Histogram, Registry } from 'prom-client'
import type { CommonConfig, Service } from './config.ts'

/** Seconds: the gateway answers in under a millisecond, a sign-in (scrypt) in tens, an upstream in up to `UPSTREAM_TIMEOUT`. */
export const DURATION_BUCKETS: readonly number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

/** The `route` of a request no route matched (a 404, an attack path): never its URL. */
export const UNMATCHED_ROUTE = '(unmatched)'

const METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'])

/** The `method` label: the methods a route takes, every other one (`PROPFIND`, …) as `_OTHER` (OpenTelemetry's convention). */
export function methodLabel (method: string): string {
  return METHODS.has(method) ? method : '_OTHER'
}

const METRICS_PATH = '/metrics'
const SCRAPE_TIMEOUT_MS = 5_000
const MAX_SCRAPERS = 16
const MISNAMED_DEFAULT_METRICS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']

/**
 * One process's metrics (`METRICS_PORT`): Node's own (event-loop delay, memory, GC, handles), the
 * requests of each service it runs, and what the services add to `registry` (gateway/metrics.ts,
 * auth-core's endpoints). `npm start` runs both services in one process, so one registry and one
 * port hold both, told apart by the `service` label.
 */
export class ProcessMetrics {
  readonly registry = new Registry()
  /** Every answered request; its `_count` is the request count. Labelled by route pattern, never the URL. */
  readonly requests: Histogram<'service' | 'route' | 'method' | 'status'>
  readonly #address: { host: string, port: number } | undefined
  #server: Server | null = null

  /** `address`: where `listen` serves them (`METRICS_HOST`, `METRICS_PORT`); without it they are only kept. */
  constructor (address?: { host: string, port: number }) {
    this.#address = address
    collectDefaultMetrics({ register: this.registry })
    // Gauges named like counters (promtool refuses the name); `nodejs_active_handles` etc. by type stay.
    for (const name of MISNAMED_DEFAULT_METRICS) this.registry.removeSingleMetric(name)
    this.requests = new Histogram({
      name: 'http_request_duration_seconds',
      help: 'Requests answered, by service, route pattern, method and status: from arrival to the last byte sent',
      labelNames: ['service', 'route', 'method', 'status'],
      buckets: [...DURATION_BUCKETS],
      registers: [this.registry]
    })
  }

  /** Serves `GET /metrics` (Prometheus text format) on the address it was given; the URL it listens on. */
  async listen (): Promise<string> {
    if (this.#address === undefined) throw new Error('these metrics were given no address to serve on')
    const { host, port } = this.#address
    const server = createServer((req, res) => {
      const path = req.url?.split('?')[0]
      if (path !== METRICS_PATH || (req.method !== 'GET' && req.method !== 'HEAD')) {
        res.writeHead(404, { 'content-type': 'application/json; charset=utf-8' })
        res.end(JSON.stringify({ error: 'not_found', message: `Only GET ${METRICS_PATH} is served here` }))
        return
      }
      this.registry.metrics().then((text) => {
        res.writeHead(200, { 'content-type': this.registry.contentType, 'cache-control': 'no-store' })
        res.end(req.method === 'HEAD' ? undefined : text)
      }, () => {
        res.writeHead(500, { 'content-type': 'application/json; charset=utf-8' })
        res.end(JSON.stringify({ error: 'internal_error', message: 'The metrics could not be collected' }))
      })
    })
    // A scrape is one small GET: a client slower than this is not a scraper.
    server.headersTimeout = SCRAPE_TIMEOUT_MS
    server.requestTimeout = SCRAPE_TIMEOUT_MS
    server.maxConnections = MAX_SCRAPERS
    this.#server = server
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, host, () => { server.off('error', reject); resolve() })
    })
    const address = server.address() as AddressInfo
    return `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}${METRICS_PATH}`
  }

  /** Stops serving (the scrapes in flight are answered). */
  async close (): Promise<void> {
    const server = this.#server
    if (server === null) return
    this.#server = null
    await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
  }
}

/** The process's metrics when `METRICS_PORT` is set (served by `listen`), else undefined. */
export function startMetrics (config: Readonly<Pick<CommonConfig, 'metricsPort' | 'metricsHost'>>): ProcessMetrics | undefined {
  return config.metricsPort === undefined ? undefined : new ProcessMetrics({ host: config.metricsHost, port: config.metricsPort })
}

export interface RequestMetricsOptions {
  metrics: ProcessMetrics
  service: Service
}

/** Records every answered request of the service (one `onResponse` hook). */
async function requestMetrics (app: FastifyInstance, options: RequestMetricsOptions): Promise<void> {
  const { requests } = options.metrics
  const service = options.service
  app.addHook('onResponse', function recordRequest (request, reply, done) {
    requests.observe({ service, route: request.routeOptions.url ?? UNMATCHED_ROUTE, method: methodLabel(request.method), status: reply.statusCode }, reply.elapsedTime / 1000)
    done()
  })
}

export default fp(requestMetrics, { name: 'request-metrics' })
