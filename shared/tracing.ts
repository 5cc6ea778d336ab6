import { context, propagation, trace } from '@opentelemetry/api'
import { FastifyOtelInstrumentation } from '@fastify/otel'
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http'
import { UndiciInstrumentation } from '@opentelemetry/instrumentation-undici'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { BatchSpanProcessor } from '@opentelemetry/sdk-trace-base'
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node'
import type { FastifyPluginCallback } from 'fastify'
import type { CommonConfig, Service } from './config.ts'
import { redactUrl } from './log.ts'
import { traceNewConnections } from './spans.ts'

/** What the OpenTelemetry variables say (read by config.ts, the only reader of the environment). */
export type TracingConfig = Pick<CommonConfig, 'otelEndpoint' | 'otelServiceName'>

/**
 * The process's tracing (`OTEL_EXPORTER_OTLP_ENDPOINT`): W3C `traceparent` read from each request
 * and sent with every undici call (auth-core, the upstreams), spans for each request and each of its
 * named hooks (`identify`, `authorise`, … : identity resolution and the policy decision), for each
 * undici call and each SQL query, batched to the collector over OTLP/HTTP. URLs in spans are redacted
 * as in the logs (no query values, no reset token).
 */
export class ProcessTracing {
  readonly #provider: NodeTracerProvider
  readonly #undici: UndiciInstrumentation

  constructor (endpoint: string, serviceName: string) {
    this.#provider = new NodeTracerProvider({
      resource: resourceFromAttributes({ 'service.name': serviceName }),
      spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: `${endpoint.replace(/\/+$/, '')}/v1/traces` }))]
    })
    // Global: the context manager (AsyncLocalStorage), the W3C propagator, the tracer of SQL spans.
    this.#provider.register()
    // Enabled at once (its `enabled: false` would also ignore every request); spans go to this provider.
    this.#undici = new UndiciInstrumentation({
      requireParentforSpans: true,
      startSpanHook: (request) => {
        const url = new URL(redactUrl(request.path), request.origin)
        return { 'url.full': url.href, 'url.path': url.pathname, 'url.query': url.search }
      },
      // The client's trace headers, passed on by the allowlist, give way to the call's own (added
      // next); a call outside any trace keeps what it has.
      requestHook: (span, request) => { if (trace.isSpanContextValid(span.spanContext())) withoutTraceHeaders(request) }
    })
    this.#undici.setTracerProvider(this.#provider)
    traceNewConnections(true)
  }

  /** The Fastify plugin of one service: a span per request and per named hook. Register it first. */
  plugin (service: Service): FastifyPluginCallback {
    const instrumentation = new FastifyOtelInstrumentation({
      enabled: false,
      instrumentHooks: false,
      requestHook: (span, request) => {
        span.setAttribute('url.path', redactUrl(request.url))
        span.setAttribute('auth_gateway.service', service)
      }
    })
    instrumentation.setTracerProvider(this.#provider)
    instrumentation.enable()
    return instrumentation.plugin()
  }

  /** Sends every span ended so far to the collector. */
  async flush (): Promise<void> {
    await this.#provider.forceFlush()
  }

  /** Sends what is still batched, then stops; the globals are released (a later start may register). */
  async shutdown (): Promise<void> {
    traceNewConnections(false)
    this.#undici.disable()
    await this.#provider.shutdown()
    trace.disable()
    context.disable()
    propagation.disable()
  }
}

const TRACE_HEADERS: ReadonlySet<string> = new Set(['traceparent', 'tracestate', 'baggage'])

/** Drops the trace context headers of an undici request (`[name, value, …]`, or raw lines in old versions). */
function withoutTraceHeaders (request: { headers: string | unknown[] }): void {
  const { headers } = request
  if (Array.isArray(headers)) {
    for (let i = headers.length - 2; i >= 0; i -= 2) {
      if (TRACE_HEADERS.has(String(headers[i]).toLowerCase())) headers.splice(i, 2)
    }
  } else {
    request.headers = headers.split('\r\n').filter((line) => !TRACE_HEADERS.has(line.slice(0, line.indexOf(':')).trim().toLowerCase())).join('\r\n')
  }
}

/** Tracing for this process when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, named `OTEL_SERVICE_NAME` or after the service. */
export function startTracing (config: Readonly<TracingConfig>, service: Service): ProcessTracing | undefined {
  if (config.otelEndpoint === undefined) return undefined
  return new ProcessTracing(config.otelEndpoint, config.otelServiceName ?? (service === 'gateway' ? 'auth-gateway' : 'auth-core'))
}
