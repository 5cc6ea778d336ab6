import t from 'tap'
import { randomBytes } from 'node:crypto'
import { startTestStack } from '../helper.ts'
import { signUp } from '../readers.ts'
import { recordingUpstream } from '../upstream.ts'

// OTEL_EXPORTER_OTLP_ENDPOINT (issue 17): W3C trace context from the browser through the gateway to
// auth-core, Postgres and the upstreams, spans sent over OTLP/HTTP. The collector is a recording
// HTTP server on loopback that keeps what the exporter posts to /v1/traces.
const collector = await recordingUpstream(t)
const rag = await recordingUpstream(t)
const stack = await startTestStack(t, { OTEL_EXPORTER_OTLP_ENDPOINT: collector.url, OTEL_SERVICE_NAME: 'docs-gateway', RAG_UPSTREAM_URL: rag.url })
const tracing = stack.tracing
if (tracing === undefined) throw new Error('the stack started without tracing')

interface ExportedSpan {
  traceId: string
  spanId: string
  parentSpanId?: string
  name: string
  kind: number
  attributes: Record<string, string | number | boolean>
  service: string
}

type OtlpValue = { stringValue?: string, intValue?: string | number, boolValue?: boolean, doubleValue?: number }
interface OtlpExport {
  resourceSpans: Array<{
    resource: { attributes: Array<{ key: string, value: OtlpValue }> }
    scopeSpans: Array<{ spans: Array<{ traceId: string, spanId: string, parentSpanId?: string, name: string, kind: number, attributes?: Array<{ key: string, value: OtlpValue }> }> }>
  }>
}

function valueOf (value: OtlpValue): string | number | boolean {
  return value.stringValue ?? value.boolValue ?? value.doubleValue ?? Number(value.intValue)
}

/** Every span the collector received so far, after the batch is sent. */
async function exported (): Promise<ExportedSpan[]> {
  await tracing?.flush()
  const spans: ExportedSpan[] = []
  for (const request of collector.requests.filter((r) => r.url === '/v1/traces')) {
    const body = JSON.parse(request.body) as OtlpExport
    for (const resourceSpans of body.resourceSpans) {
      const service = String(valueOf(resourceSpans.resource.attributes.find((a) => a.key === 'service.name')?.value ?? {}))
      for (const scope of resourceSpans.scopeSpans) {
        for (const span of scope.spans) {
          const attributes = Object.fromEntries((span.attributes ?? []).map((a) => [a.key, valueOf(a.value)]))
          spans.push({ traceId: span.traceId, spanId: span.spanId, parentSpanId: span.parentSpanId === '' ? undefined : span.parentSpanId, name: span.name, kind: span.kind, attributes, service })
        }
      }
    }
  }
  return spans
}

/** A browser's `traceparent`: a new trace, the page's span as parent, sampled. */
function traceparent (): { header: string, traceId: string, parentId: string } {
  const traceId = randomBytes(16).toString('hex')
  const parentId = randomBytes(8).toString('hex')
  return { header: `00-${traceId}-${parentId}-01`, traceId, parentId }
}

const SERVER = 2
const CLIENT = 3

/** The spans from `span` up to the trace's first one. */
function ancestry (spans: ExportedSpan[], span: ExportedSpan): ExportedSpan[] {
  const byId = new Map(spans.map((s) => [s.spanId, s]))
  const chain = [span]
  let current = span
  while (current.parentSpanId !== undefined && byId.has(current.parentSpanId)) {
    current = byId.get(current.parentSpanId) as ExportedSpan
    chain.push(current)
  }
  return chain
}

t.test('a signed-in request is one trace: gateway, its policy stages, the call to auth-core, auth-core, Postgres', async (t) => {
  const reader = await signUp(stack)
  // A session the gateway has not seen: it asks auth-core.
  stack.gateway.identities.forgetAll()
  const trace = traceparent()
  const response = await fetch(`${stack.url}/api/v1/profile`, { headers: { cookie: reader.cookie, traceparent: trace.header } })
  t.equal(response.status, 200)
  await response.arrayBuffer()

  const spans = (await exported()).filter((s) => s.traceId === trace.traceId)
  const gatewayRequest = spans.find((s) => s.kind === SERVER && s.attributes['auth_gateway.service'] === 'gateway')
  t.ok(gatewayRequest, 'the gateway\'s request span')
  t.equal(gatewayRequest?.parentSpanId, trace.parentId, 'a child of the browser\'s span (its traceparent)')
  t.equal(gatewayRequest?.attributes['http.route'], '/api/v1/profile', 'named by its route')
  t.equal(gatewayRequest?.service, 'docs-gateway', 'OTEL_SERVICE_NAME names the service')
  for (const stage of ['identify', 'authorise']) t.ok(spans.some((s) => s.name.includes(stage)), `a span for the ${stage} stage`)

  const lookup = spans.find((s) => s.kind === CLIENT && s.attributes['url.path'] === '/api/validate-session')
  t.ok(lookup, 'the session look-up in auth-core, as an HTTP client span')
  t.ok(lookup !== undefined && ancestry(spans, lookup).some((s) => s.name.includes('identify')), 'made by the identify stage')
  const authCoreRequest = spans.find((s) => s.kind === SERVER && s.attributes['auth_gateway.service'] === 'auth-core')
  t.ok(authCoreRequest, 'auth-core\'s request span')
  t.equal(authCoreRequest?.parentSpanId, lookup?.spanId ?? 'the look-up', 'auth-core\'s request span is the look-up\'s child: the context crossed the HTTP hop')

  const queries = spans.filter((s) => s.attributes['db.system.name'] === 'postgresql')
  t.ok(queries.some((q) => ancestry(spans, q).includes(authCoreRequest as ExportedSpan)), 'auth-core\'s SQL (the session read) in the trace')
  t.ok(queries.some((q) => ancestry(spans, q).some((s) => s.name.includes('handler'))), 'the gateway\'s own SQL (the profile read) too')
  t.ok(queries.every((q) => typeof q.attributes['db.query.text'] === 'string' && !String(q.attributes['db.query.text']).includes(reader.email)), 'statements carry parameters, not values')
})

t.test('the RAG upstream receives the trace in traceparent', async (t) => {
  const trace = traceparent()
  const response = await fetch(`${stack.url}/api/v1/query`, { method: 'POST', headers: { 'content-type': 'application/json', traceparent: trace.header, baggage: 'user.id=admin,role=admin' }, body: '{"q":"x"}' })
  t.equal(response.status, 200)
  await response.arrayBuffer()
  t.equal(rag.requests.at(-1)?.headers.baggage, undefined, 'a client\'s baggage never reaches the upstream')
  const received = String(rag.requests.at(-1)?.headers.traceparent)
  t.match(received, new RegExp(`^00-${trace.traceId}-[0-9a-f]{16}-01$`), 'the same trace id')
  const spans = (await exported()).filter((s) => s.traceId === trace.traceId)
  const call = spans.find((s) => s.kind === CLIENT && s.attributes['url.path'] === '/api/v1/query')
  t.equal(received.split('-')[2], call?.spanId, 'its parent is the gateway\'s call span')
})

t.test('no secret in a span: query values and reset tokens are redacted', async (t) => {
  const trace = traceparent()
  const response = await fetch(`${stack.url}/auth/reset-password/secret-reset-token?callbackURL=secret-callback`, { headers: { traceparent: trace.header } })
  await response.arrayBuffer()
  const spans = (await exported()).filter((s) => s.traceId === trace.traceId)
  t.ok(spans.length > 0, 'the request was traced')
  const text = JSON.stringify(spans)
  t.notOk(text.includes('secret-reset-token'), 'no reset token')
  t.notOk(text.includes('secret-callback'), 'no query value')
  const request = spans.find((s) => s.kind === SERVER)
  t.equal(request?.attributes['url.path'], '/auth/reset-password/[redacted]', 'url.path is the path alone')
  t.equal(request?.attributes['url.query'], 'callbackURL=[redacted]', 'the query apart, its values redacted')
})

t.test('without a traceparent the gateway starts the trace; the services share it', async (t) => {
  const before = new Set((await exported()).map((s) => s.traceId))
  const reader = await signUp(stack)
  const spans = (await exported()).filter((s) => !before.has(s.traceId))
  const signUpRequest = spans.find((s) => s.kind === SERVER && s.attributes['auth_gateway.service'] === 'gateway' && s.parentSpanId === undefined)
  t.ok(signUpRequest, 'a root span on the gateway')
  t.ok(spans.some((s) => s.traceId === signUpRequest?.traceId && s.attributes['auth_gateway.service'] === 'auth-core'), 'auth-core\'s span in the same trace')
  t.ok(reader.userId.length > 0)
})
