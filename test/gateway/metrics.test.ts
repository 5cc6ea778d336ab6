import t from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { cookieFetch, gatewayOn, postJson, startTestStack } from '../helper.ts'
import { until } from '../poll.ts'
import { startRedisServer } from '../processes.ts'
import { rawRequest } from '../raw-http.ts'
import { PASSWORD, signUp } from '../readers.ts'
import { closedPortUrl, recordingUpstream } from '../upstream.ts'
import { ProcessMetrics, UNMATCHED_ROUTE } from '../../shared/metrics.ts'

// METRICS_PORT (issue 17): Prometheus exposition on a port of its own. One stack for the file, both
// services in one process as `npm start` runs them: one scrape holds both.
const rag = await recordingUpstream(t)
const stack = await startTestStack(t, { METRICS_PORT: '0', RAG_UPSTREAM_URL: rag.url, APP_UPSTREAM_URL: await closedPortUrl(), AUTH_RATE_LIMIT_MAX: '8' })
const metricsUrl = stack.metricsUrl ?? ''

interface Sample { name: string, labels: Record<string, string>, value: number }

/** The scrape, parsed: one sample per line (`name{a="b"} value`). */
async function scrape (): Promise<{ text: string, samples: Sample[] }> {
  const response = await fetch(metricsUrl)
  if (response.status !== 200) throw new Error(`the scrape answered ${response.status}`)
  const text = await response.text()
  const samples: Sample[] = []
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (match === null) continue
    const labels: Record<string, string> = {}
    for (const [, key, value] of (match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[key] = value
    samples.push({ name: match[1], labels, value: Number(match[3]) })
  }
  return { text, samples }
}

/** The sum of a metric's samples whose labels include `labels`. */
function total (samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  return samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((sum, s) => sum + s.value, 0)
}

async function moved (name: string, labels: Record<string, string>, act: () => Promise<unknown>): Promise<number> {
  const before = total((await scrape()).samples, name, labels)
  await act()
  return total((await scrape()).samples, name, labels) - before
}

t.test('served on its own loopback port, never on the public one', async (t) => {
  t.match(metricsUrl, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/, 'loopback by default')
  t.not(new URL(metricsUrl).port, new URL(stack.url).port, 'a port of its own')
  const onPublic = await fetch(`${stack.url}/metrics`)
  t.equal(onPublic.status, 404, 'the public port has no /metrics')
  await onPublic.arrayBuffer()
  const other = await fetch(new URL('/other', metricsUrl))
  t.equal(other.status, 404, 'the metrics port serves /metrics only')
  t.match(await other.json(), { error: 'not_found' })
  const response = await fetch(metricsUrl)
  t.match(response.headers.get('content-type'), /^text\/plain; version=0\.0\.4/, 'Prometheus text format')
  await response.arrayBuffer()
})

t.test('a 401 and a 403 of the policy, a sign-in refused: each moves its counter', async (t) => {
  t.equal(await moved('gateway_policy_refusals_total', { status: '401' }, async () => {
    const response = await fetch(`${stack.url}/api/v1/profile`)
    t.equal(response.status, 401)
    await response.arrayBuffer()
  }), 1, 'the 401 of a protected route without a session')

  const reader = await signUp(stack)
  t.equal(await moved('gateway_policy_refusals_total', { status: '403' }, async () => {
    const response = await reader.browser(`${stack.url}/api/v1/admin/audit`)
    t.equal(response.status, 403)
    await response.arrayBuffer()
  }), 1, 'the 403 of an admin route to a reader')

  const stranger = cookieFetch()
  t.equal(await moved('gateway_auth_events_total', { event: 'sign_in', outcome: 'failure' }, async () => {
    const response = await postJson(stranger, `${stack.url}/auth/sign-in/email`, { email: reader.email, password: 'not the password' })
    t.equal(response.status, 401)
    await response.arrayBuffer()
  }), 1, 'a wrong password: a failed sign-in')
  t.equal(await moved('gateway_auth_events_total', { event: 'sign_in', outcome: 'success' }, async () => {
    const response = await postJson(stranger, `${stack.url}/auth/sign-in/email`, { email: reader.email, password: PASSWORD })
    t.equal(response.status, 200)
    await response.arrayBuffer()
  }), 1, 'the right one: a sign-in')

  const { samples } = await scrape()
  t.ok(total(samples, 'auth_core_endpoint_duration_seconds_count', { endpoint: '/sign-in/email', status: '401' }) >= 1, 'auth-core counts the refused sign-in by its endpoint')
  t.ok(total(samples, 'gateway_auth_events_total', { event: 'sign_up', outcome: 'success' }) >= 1, 'the sign-up')
})

t.test('sessions: a cache miss is one look-up in auth-core, the next request a hit', async (t) => {
  const reader = await signUp(stack)
  const before = (await scrape()).samples
  for (let i = 0; i < 2; i++) {
    const response = await reader.browser(`${stack.url}/api/v1/profile`)
    t.equal(response.status, 200)
    await response.arrayBuffer()
  }
  const after = (await scrape()).samples
  const delta = (name: string, labels: Record<string, string>): number => total(after, name, labels) - total(before, name, labels)
  t.equal(delta('gateway_cache_reads_total', { cache: 'session', result: 'miss' }), 1, 'one miss')
  t.ok(delta('gateway_cache_reads_total', { cache: 'session', result: 'hit' }) >= 1, 'then a hit')
  t.equal(delta('gateway_auth_core_lookups_total', { outcome: 'signed_in' }), 1, 'one look-up, that found the reader')
  t.equal(delta('gateway_upstream_duration_seconds_count', { upstream: 'auth', status: '200' }), 1, 'its latency')
})

t.test('upstreams: latency of an answer, errors of an upstream that is down, by upstream', async (t) => {
  t.equal(await moved('gateway_upstream_duration_seconds_count', { upstream: 'rag', status: '200' }, async () => {
    const response = await fetch(`${stack.url}/api/v1/query`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"q":"x"}' })
    t.equal(response.status, 200)
    await response.arrayBuffer()
  }), 1, 'the RAG call')
  const reader = await signUp(stack)
  t.equal(await moved('gateway_upstream_errors_total', { upstream: 'app', error: 'UPSTREAM_UNAVAILABLE' }, async () => {
    const response = await reader.browser(`${stack.url}/api/private`)
    t.equal(response.status, 503)
    await response.arrayBuffer()
  }), 1, 'the app upstream refusing connections')
})

t.test('labels are route patterns, whatever the URL: 404s and attack paths add none of their own', async (t) => {
  const attacks = ['/wp-login.php', '/api/v1/profile/../../../etc/passwd', '/api/%2e%2e/admin', '/.env', '/auth/../api/v1/profile', `/api/v1/${'x'.repeat(200)}`, '/api/v1/query?id=1%27%20OR%201=1']
  for (const target of attacks) await rawRequest(stack.url, 'GET', target)
  await rawRequest(stack.url, 'PROPFIND', '/api/v1/profile')
  await rawRequest(stack.url, 'POST', '/auth/not-an-endpoint', [['Content-Type', 'application/json'], ['Origin', 'http://localhost:3000']], '{}')
  const { samples } = await scrape()
  const requests = samples.filter((s) => s.name === 'http_request_duration_seconds_count')
  t.ok(requests.some((s) => s.labels.route === UNMATCHED_ROUTE && s.labels.status === '404'), `unrouted requests are counted as ${UNMATCHED_ROUTE}`)
  t.ok(requests.some((s) => s.labels.method === '_OTHER'), 'a method no route takes is _OTHER')
  t.notOk(requests.some((s) => s.labels.method === 'PROPFIND'), 'never its own name')
  for (const sample of requests) {
    const { route, method, service } = sample.labels
    const app = service === 'gateway' ? stack.gateway : stack.authCore
    if (route !== UNMATCHED_ROUTE && method !== '_OTHER') t.ok(app.hasRoute({ url: route, method }), `${service} ${method} ${route} is a registered route`)
  }
  const text = samples.map((s) => JSON.stringify(s.labels)).join('\n')
  for (const fragment of ['wp-login', 'passwd', '.env', 'xxxxxxxx', 'OR 1', 'not-an-endpoint']) t.notOk(text.includes(fragment), `no label holds "${fragment}"`)
  t.ok(total(samples, 'auth_core_endpoint_duration_seconds_count', { endpoint: UNMATCHED_ROUTE }) >= 1, 'auth-core\'s unknown endpoints too')
})

t.test('a 429 moves the rate-limit counter of its group, and the requests by status', async (t) => {
  // AUTH_RATE_LIMIT_MAX is 8 for the file, most of it spent by the sign-ups and sign-ins above.
  const before = (await scrape()).samples
  let limited = 0
  for (let i = 0; i < 10; i++) {
    const response = await postJson(cookieFetch(), `${stack.url}/auth/sign-in/email`, { email: 'nobody@example.com', password: 'not the password' })
    if (response.status === 429) limited += 1
    await response.arrayBuffer()
  }
  t.ok(limited >= 2, `${limited} of the 10 sign-ins refused`)
  const after = (await scrape()).samples
  const delta = (name: string, labels: Record<string, string>): number => total(after, name, labels) - total(before, name, labels)
  t.equal(delta('gateway_rate_limited_total', { group: 'auth' }), limited, 'each 429, by group')
  t.equal(delta('http_request_duration_seconds_count', { service: 'gateway', route: '/auth/*', method: 'POST', status: '429' }), limited, 'and among the requests, by route pattern and status')
})

t.test('gateway_redis_up: 1 while Redis answers, 0 while it is away, 1 again when it is back; absent without REDIS_URL', async (t) => {
  t.notOk((await scrape()).samples.some((s) => s.name === 'gateway_redis_up'), 'absent without REDIS_URL: nothing is down')
  const redis = await startRedisServer(t)
  const metrics = new ProcessMetrics()
  const gateway = await gatewayOn(t, stack, { REDIS_URL: redis.url }, { metrics })
  const redisUp = async (): Promise<number | undefined> => {
    const metric = await metrics.registry.getSingleMetric('gateway_redis_up')?.get()
    return metric?.values[0]?.value
  }
  const ask = async (): Promise<void> => { await gateway.inject({ method: 'GET', url: '/health' }) }
  await ask()
  t.equal(await redisUp(), 1, 'up')
  await redis.kill()
  // Polled: the gauge follows ioredis' connection events, which come on their own time.
  const settlesAt = async (what: string, value: number, ms: number): Promise<number> => await until(what, ms, async () => {
    await ask()
    const current = await redisUp()
    return current === value ? current : undefined
  })
  t.equal(await settlesAt('the gauge to fall', 0, 10_000), 0, '0 once Redis is gone')
  await redis.start()
  t.equal(await settlesAt('the gauge to rise', 1, 20_000), 1, '1 again once it is back')
})

t.test('Node\'s own: event-loop delay and memory', async (t) => {
  const { samples } = await scrape()
  for (const name of ['nodejs_eventloop_lag_p99_seconds', 'process_resident_memory_bytes', 'nodejs_heap_size_used_bytes']) t.ok(samples.some((s) => s.name === name), name)
})

t.test('promtool check metrics accepts the exposition', async (t) => {
  const { text } = await scrape()
  const promtool = spawn('promtool', ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] })
  let output = ''
  promtool.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  promtool.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  promtool.stdin.end(text)
  const [code] = await once(promtool, 'close') as [number | null]
  t.equal(code, 0, `promtool: ${output.trim() || 'no findings'}`)
  t.equal(output.trim(), '', 'no lint findings either')
})
