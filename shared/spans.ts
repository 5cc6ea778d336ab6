import { context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api'
import type { Attributes, Context, Span } from '@opentelemetry/api'
import type pg from 'pg'

const TRACER_NAME = 'auth-gateway'
let enabled = false

/** From now on, new Postgres connections trace their queries (`ProcessTracing` turns it on and off). */
export function traceNewConnections (on: boolean): void {
  enabled = on
}

/** Whether `traceQueries` applies to connections made now. */
export function tracingQueries (): boolean {
  return enabled
}

/**
 * Runs `work` in a span named `name` when the request is traced (a child of its active span), else
 * as it is: without tracing this costs one look-up of the active context.
 */
export function inSpan<T> (name: string, attributes: Attributes, work: () => T): T {
  const active = context.active()
  if (trace.getSpan(active) === undefined) return work()
  return within(trace.getTracer(TRACER_NAME).startSpan(name, { attributes }, active), active, work)
}

/** Runs `work` as `span`'s child context; the span ends when `work` returns, throws or settles. */
function within<T> (span: Span, active: Context, work: () => T): T {
  let result: T
  try {
    result = context.with(trace.setSpan(active, span), work)
  } catch (err) {
    endSpan(span, err)
    throw err
  }
  if (result instanceof Promise) result.then(() => { endSpan(span, null) }, (err: unknown) => { endSpan(span, err) })
  else endSpan(span, null)
  return result
}

/** Adds attributes to the request's active span, if it is traced. */
export function annotate (attributes: Attributes): void {
  trace.getSpan(context.active())?.setAttributes(attributes)
}

/** The statement's first word (`SELECT`, `INSERT`, …): the span's name, without its values or text. */
function operationOf (args: readonly unknown[]): { operation: string, text: string | undefined } {
  const first = args[0]
  const text = typeof first === 'string' ? first : typeof first === 'object' && first !== null && typeof (first as { text?: unknown }).text === 'string' ? (first as { text: string }).text : undefined
  const operation = text === undefined ? 'QUERY' : (/^\s*(\w+)/.exec(text)?.[1] ?? 'QUERY').toUpperCase()
  return { operation, text }
}

function endSpan (span: Span, err: unknown): void {
  if (err !== null && err !== undefined) {
    span.recordException(err as Error)
    span.setStatus({ code: SpanStatusCode.ERROR, message: (err as { code?: string }).code ?? 'failed' })
  }
  span.end()
}

/**
 * A span per query of `client` inside a traced request (`db.query.text` is the statement, whose
 * values travel apart as parameters). Queries outside a trace (migrations, probes) make none.
 */
export function traceQueries (client: pg.ClientBase): void {
  const query = client.query.bind(client) as (...args: unknown[]) => unknown
  const traced = function tracedQuery (...args: unknown[]): unknown {
    const active = context.active()
    if (trace.getSpan(active) === undefined) return query(...args)
    const { operation, text } = operationOf(args)
    const span = trace.getTracer(TRACER_NAME).startSpan(`pg ${operation}`, {
      kind: SpanKind.CLIENT,
      attributes: { 'db.system.name': 'postgresql', 'db.operation.name': operation, ...(text === undefined ? {} : { 'db.query.text': text }) }
    }, active)
    const last = args.length - 1
    const callback = args[last]
    if (typeof callback === 'function') {
      // pg-pool's `pool.query` calls the client back.
      args[last] = (err: unknown, result: unknown) => {
        endSpan(span, err)
        Reflect.apply(callback, undefined, [err, result])
      }
      return context.with(trace.setSpan(active, span), () => query(...args))
    }
    return within(span, active, () => query(...args))
  }
  client.query = traced as unknown as typeof client.query
}

