import t from 'tap'
import { randomBytes } from 'node:crypto'
import { ROOT_CONTEXT, SpanKind, trace, TraceFlags } from '@opentelemetry/api'
import { SamplingDecision } from '@opentelemetry/sdk-trace-base'
import { samplerFor } from '../../shared/tracing.ts'
import { loadConfig } from '../../shared/config.ts'

// Who decides whether a request is traced: the gateway (the public edge) itself, whatever the
// client's traceparent says; auth-core follows the gateway.
const traceId = randomBytes(16).toString('hex')

function decision (ratio: number, edge: boolean, parentSampled: boolean | null): SamplingDecision {
  const context = parentSampled === null
    ? ROOT_CONTEXT
    : trace.setSpanContext(ROOT_CONTEXT, { traceId, spanId: randomBytes(8).toString('hex'), traceFlags: parentSampled ? TraceFlags.SAMPLED : TraceFlags.NONE, isRemote: true })
  return samplerFor(ratio, edge).shouldSample(context, traceId, 'request', SpanKind.SERVER, {}, []).decision
}

t.test('the gateway does not obey a client\'s sampled flag', async (t) => {
  t.equal(decision(0, true, true), SamplingDecision.NOT_RECORD, 'ratio 0: a client\'s "sampled" traceparent is not traced')
  t.equal(decision(1, true, false), SamplingDecision.RECORD_AND_SAMPLED, 'ratio 1: nor can a client opt out')
  t.equal(decision(0, true, null), SamplingDecision.NOT_RECORD, 'ratio 0, no traceparent: not traced')
  const draws = Array.from({ length: 2000 }, () => decision(0.25, true, true) === SamplingDecision.RECORD_AND_SAMPLED).filter(Boolean).length
  t.ok(draws > 350 && draws < 650, `ratio 0.25 of one trace id, 2,000 times: ${draws} sampled (a draw, not the trace id, decides)`)
})

t.test('auth-core follows the gateway\'s decision', async (t) => {
  t.equal(decision(0, false, true), SamplingDecision.RECORD_AND_SAMPLED, 'the gateway sampled it: traced')
  t.equal(decision(1, false, false), SamplingDecision.NOT_RECORD, 'the gateway did not: not traced')
})

t.test('OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG', async (t) => {
  const ratio = (env: Record<string, string>): number => loadConfig({ JWT_SECRET: 'x'.repeat(40), ...env }, 'gateway').otelSampleRatio
  t.equal(ratio({}), 1, 'every request by default')
  t.equal(ratio({ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.1' }), 0.1)
  t.equal(ratio({ OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '.5' }), 0.5)
  t.equal(ratio({ OTEL_TRACES_SAMPLER: 'always_off' }), 0)
  t.equal(ratio({ OTEL_TRACES_SAMPLER: 'PARENTBASED_ALWAYS_ON' }), 1)
  for (const [name, env] of [
    ['OTEL_TRACES_SAMPLER', { OTEL_TRACES_SAMPLER: 'jaeger_remote' }],
    ['OTEL_TRACES_SAMPLER_ARG', { OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '1.5' }],
    ['OTEL_TRACES_SAMPLER_ARG', { OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: 'half' }]
  ] as const) t.throws(() => ratio(env), { name: 'ConfigError', variable: name }, `${JSON.stringify(env)} is refused`)
})
