import { context, propagation, trace } from '@opentelemetry/api'
import { FastifyOtelInstrumentation } from '@fastify/otel'
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http'
import { UndiciInstrumentation } from '@opentelemetry/instrumentation-undici'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { AlwaysOnSampler, BatchSpanProcessor, ParentBasedSampler, SamplingDecision } from '@opentelemetry/sdk-trace-base'
import type { Sampler, SamplingResult } from '@opentelemetry/sdk-trace-base'
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node'
import type { FastifyPluginCallback } from 'fastify'
import type { CommonConfig, Service } from './config.ts'
import { redactUrl } from './log.ts'
import { traceNewConnections } from './spans.ts'

/** What the OpenTelemetry variables say (read by config.ts, the only reader of the environment). */
export type TracingConfig = Pick<CommonConfig, 'otelEndpoint' | 'otelServiceName' | 'otelSampleRatio'>

/**
 * Samples `ratio` of what it is asked about by a random draw, never by the trace id: a client picks
 * its trace id, and could pick ids a ratio sampler always keeps.
 */
class RandomRatioSampler implements Sampler {
  readonly #ratio: number

  constructor (ratio: number) {
    this.#ratio = ratio
  }

  shouldSample (): SamplingResult {
    return { decision: Math.random() < this.#ratio ? SamplingDecision.RECORD_AND_SAMPLED : SamplingDecision.NOT_RECORD }
  }

  toString (): string {
    return `RandomRatioSampler{${this.#ratio}}`
  }
}

/**
 * The gateway, the public edge, decides for each request itself: a client's `traceparent` gives the
 * trace its id and parent, but its sampled flag is not obeyed (or every client could have all its
 * requests traced). auth-core, behind the gateway, follows the gateway's decision.
 */
export function samplerFor (ratio: number, edge: boolean): Sampler {
  const root = ratio >= 1 ? new AlwaysOnSampler() : new RandomRatioSampler(ratio)
  return edge ? new ParentBasedSampler({ root, remoteParentSampled: root, remoteParentNotSampled: root }) : new ParentBasedSampler({ root })
}

/**
 * The process's tracing (`OTEL_EXPORTER_OTLP_ENDPOINT`): W3C `traceparent` read from each request
 * and sent with every undici call (auth-core, the upstreams), spans for each request and its handler
 * (the stages add `identify` and `authorise`: shared/spans.ts), for each undici call and each SQL
 * query, batched to the collector over OTLP/HTTP. URLs in spans are redacted
 * as in the logs (no query values, no reset token).
 */
export class ProcessTracing {
  readonly #provider: NodeTracerProvider
  readonly #undici: UndiciInstrumentation

  constructor (endpoint: string, serviceName: string, sampler: Sampler) {
    this.#provider = new NodeTracerProvider({
      resource: resourceFromAttributes({ 'service.name': serviceName }),
      sampler,
      spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: `${endpoint.replace(/\/+$/, '')}/v1/traces` }))]
    })
    // Global: the context manager (AsyncLocalStorage), the tracer of SQL spans, and W3C trace
    // context only: a client's `baggage` is never read into the context, so never sent on.
    this.#provider.register({ propagator: new W3CTraceContextPropagator() })
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

  /** The Fastify plugin of one service: a span per request and per handler (hooks get none: about 12 a request). Register it first. */
  plugin (service: Service): FastifyPluginCallback {
    const instrumentation = new FastifyOtelInstrumentation({
      enabled: false,
      instrumentHooks: false,
      requestHook: (span, request) => {
        const url = redactUrl(request.url)
        const mark = url.indexOf('?')
        span.setAttribute('url.path', mark === -1 ? url : url.slice(0, mark))
        if (mark !== -1) span.setAttribute('url.query', url.slice(mark + 1))
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
  const gateway = service === 'gateway'
  return new ProcessTracing(config.otelEndpoint, config.otelServiceName ?? (gateway ? 'auth-gateway' : 'auth-core'), samplerFor(config.otelSampleRatio, gateway))
}
