import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { haproxyInstalled } from '../haproxy.ts'
import { nodeScript, startChild, stats, stop } from './children.ts'
import type { Child } from './children.ts'
import { HASHING_ENV, HASHING_NICE } from './hashing.ts'
import { startNginx } from './nginx.ts'
import { CONNECTIONS, load, median, Rotation } from './load.ts'
import type { Figures, Load, Run } from './load.ts'
import { bundleService } from './bundle.ts'
import { checkSession, clientToken, clientTokens, forgedCookies, seedReaders, shuffled, unseedReaders } from './population.ts'
import { HAPROXY_SOURCE, startReplicas } from './replicas.ts'
import type { Replicas } from './replicas.ts'
import type { SeededReader } from './service-messages.ts'
import { soak, soakTable } from './soak.ts'
import { openStreams, STREAM_EVENTS, STREAM_INTERVAL_MS, streamLatency } from './streams.ts'
import type { OpenStreamsFigures, StreamFigures } from './streams.ts'

/*
 * `npm run bench` (DESIGN §8): a trivial upstream, Postgres, auth-core and the gateway (production
 * mode, logs at warn), and nginx as a reference when installed, each in its own process; autocannon
 * drives them from this one. Numbers are for people: nothing here passes or fails.
 */

const PASSWORD = 'benchmark password 1'
const SECRET = 'benchmark-secret-of-at-least-thirty-two-characters'
const SCENARIOS = ['direct', 'nginx', 'node-proxy', 'fastify-proxy', 'public', 'public-observed', 'authed', 'bearer', 'authed-many', 'profile', 'signin', 'verify-bound', 'public-under-signin', 'public-fixed-rate', 'direct-fixed-rate', 'haproxy-1', 'haproxy-2'] as const
type Scenario = typeof SCENARIOS[number]
// Streamed answers (streams.ts): first-event latency straight and through the gateway, and many open at once.
const STREAM_SCENARIOS = ['stream-direct', 'stream-node-proxy', 'stream', 'streams-open'] as const
type StreamScenario = typeof STREAM_SCENARIOS[number]
const OPEN_STREAMS = 500
const DEFAULT_READERS = 5000
// The soak's population besides its readers' cookies (issue 13).
const SOAK_CLIENT_TOKENS = 9000
const SOAK_FORGED_COOKIES = 6000

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    json: { type: 'string' },
    'cpu-prof': { type: 'boolean', default: false },
    only: { type: 'string' },
    duration: { type: 'string' },
    users: { type: 'string' },
    redis: { type: 'string' },
    soak: { type: 'string' },
    'gateway-flags': { type: 'string' },
    'gateway-env': { type: 'string' },
    bundle: { type: 'boolean', default: false }
  }
})

function positiveInteger (option: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback
  if (!/^\d+$/.test(raw) || Number(raw) < 1) throw new Error(`--${option} must be a whole number of at least 1, not ${raw}`)
  return Number(raw)
}

const ROUNDS = args.quick ? 1 : 3
const DURATION = args.duration !== undefined ? Number(args.duration) : args.quick ? 3 : 10
const READERS = positiveInteger('users', args.users, DEFAULT_READERS)
const SOAK_SECONDS = args.soak === undefined ? null : positiveInteger('soak', args.soak, 0)
if (args.redis !== undefined && !/^rediss?:\/\//.test(args.redis)) throw new Error(`--redis must be a redis:// URL, not ${args.redis}`)
const ONLY = args.only?.split(',') ?? null
const ALL_SCENARIOS: readonly string[] = [...SCENARIOS, ...STREAM_SCENARIOS]
const unknown = ONLY?.filter((name) => !ALL_SCENARIOS.includes(name)) ?? []
if (unknown.length > 0) throw new Error(`--only: no scenario ${unknown.join(', ')} (there are ${ALL_SCENARIOS.join(', ')})`)
const selected = (name: Scenario | StreamScenario): boolean => SOAK_SECONDS === null && (ONLY === null || ONLY.includes(name))
// public-observed's sampling: the SDK's own variables, a common production setting.
const OBSERVED_SAMPLING = { OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.1' }
const GATEWAY_FLAGS = args['gateway-flags']?.split(/\s+/).filter((flag) => flag !== '') ?? []
const GATEWAY_ENV: Record<string, string> = {}
for (const pair of args['gateway-env']?.split(',').filter((p) => p !== '') ?? []) {
  const at = pair.indexOf('=')
  if (at < 1) throw new Error(`--gateway-env takes NAME=value pairs separated by commas, not ${pair}`)
  GATEWAY_ENV[pair.slice(0, at)] = pair.slice(at + 1)
}

const run = (spec: Load, duration = DURATION): Promise<Run> => load(spec, duration)
const log = (line: string): void => { process.stderr.write(`${line}\n`) }
const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`

/** The raw password-verify rate at the same concurrency, in auth-core's environment: what sign-in cannot beat. */
async function verifyBound (duration = DURATION): Promise<Run> {
  const child = nodeScript('verify.ts', [PASSWORD, String(duration), String(CONNECTIONS)], HASHING_ENV, { nice: HASHING_NICE })
  let output = ''
  child.stdout?.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
  if (code !== 0) throw new Error(`verify.ts exited with ${code}`)
  return JSON.parse(output) as Run
}

/**
 * Waits (up to 15 s) until the services are idle again: sign-ins still queued in auth-core when a
 * scenario's load stops would otherwise take the CPU of the next scenario.
 */
async function settle (services: ChildProcess[]): Promise<void> {
  const deadline = Date.now() + 15_000
  let before = await Promise.all(services.map((service) => stats(service)))
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 250))
    const after = await Promise.all(services.map((service) => stats(service)))
    const busiest = Math.max(...after.map((s, i) => s.cpu.user + s.cpu.system - before[i].cpu.user - before[i].cpu.system))
    if (busiest < 25_000) return // under 10 % of a core over the last 250 ms
    before = after
  }
}

/** The median over the rounds of each round's first-event p50 difference (a round compares like with like). */
function overhead (through: readonly StreamFigures[], direct: readonly StreamFigures[]): number | null {
  const rounds = Math.min(through.length, direct.length)
  if (rounds === 0) return null
  return Math.round(median(Array.from({ length: rounds }, (_, i) => through[i].firstEventP50 - direct[i].firstEventP50)) * 100) / 100
}

/** One scenario's rounds: the median of each figure, the streams and errors of all. */
function medianStreamFigures (rounds: readonly StreamFigures[]): StreamFigures | null {
  if (rounds.length === 0) return null
  const of = (pick: (figures: StreamFigures) => number): number => median(rounds.map(pick))
  return {
    streams: rounds.reduce((sum, f) => sum + f.streams, 0),
    firstEventP50: of((f) => f.firstEventP50),
    firstEventP99: of((f) => f.firstEventP99),
    totalP50: of((f) => f.totalP50),
    totalP99: of((f) => f.totalP99),
    errors: rounds.reduce((sum, f) => sum + f.errors, 0)
  }
}

function streamLines (streaming: { direct: StreamFigures | null, nodeProxy: StreamFigures | null, gateway: StreamFigures | null, open: OpenStreamsFigures | null, firstEventOverheadP50Ms: number | null, nodeProxyFirstEventOverheadP50Ms: number | null }): string[] {
  const lines: string[] = []
  for (const [name, figures] of [['stream-direct', streaming.direct], ['stream-node-proxy', streaming.nodeProxy], ['stream', streaming.gateway]] as const) {
    if (figures !== null) lines.push(`${name.padEnd(28)} first event p50 ${figures.firstEventP50} ms, p99 ${figures.firstEventP99} ms; end p50 ${figures.totalP50} ms, p99 ${figures.totalP99} ms (${figures.streams} streams, ${figures.errors} errors)`)
  }
  if (streaming.firstEventOverheadP50Ms !== null) lines.push(`${'first-event overhead p50'.padEnd(28)} ${streaming.firstEventOverheadP50Ms} ms (gateway − direct)`)
  if (streaming.nodeProxyFirstEventOverheadP50Ms !== null) lines.push(`${'  of a plain node proxy'.padEnd(28)} ${streaming.nodeProxyFirstEventOverheadP50Ms} ms (node-proxy − direct: one more process on the way)`)
  const open = streaming.open
  if (open !== null) lines.push(`${`${open.streams} open streams`.padEnd(28)} gateway RSS ${open.rssBeforeMB} → ${open.rssOpenMB} MB (after: ${open.rssAfterMB} MB, ${open.errors} errors)`)
  return lines.length === 0 ? [] : ['', ...lines]
}

async function main (): Promise<void> {
  const children: Array<ChildProcess | undefined> = []
  let nginxDir: string | undefined
  let replicas: Replicas | undefined
  let authCore: Child | undefined
  let readers: SeededReader[] = []
  // Every reader the run made: removed at the end.
  const seeded: SeededReader[] = []
  // The services' DATA_DIR: removed with everything else the run started.
  const dataDir = mkdtempSync(join(tmpdir(), 'auth-gateway-bench-'))
  try {
    const upstream = await startChild('upstream.ts', [], {})
    children.push(upstream.process)
    let databaseUrl = process.env.DATABASE_URL
    if (databaseUrl === undefined) {
      const db = await startChild('embedded-db.ts', [], {})
      children.push(db.process)
      databaseUrl = db.url
    }
    const common = {
      NODE_ENV: 'production',
      DATABASE_URL: databaseUrl,
      BETTER_AUTH_SECRET: SECRET,
      JWT_SECRET: SECRET,
      LOG_LEVEL: 'warn',
      DATA_DIR: dataDir,
      ALLOWED_ORIGINS: 'http://localhost:3000',
      AUTH_RATE_LIMIT_MAX: '1000000000',
      RATE_LIMIT_MAX: '1000000000',
      RAG_RATE_LIMIT_ANON: '1000000000',
      RAG_RATE_LIMIT_USER: '1000000000',
      // Required in production; nothing listens there, and no scenario needs a mail delivered.
      SMTP_URL: 'smtp://127.0.0.1:2525',
      ...(args.redis === undefined ? {} : { REDIS_URL: args.redis })
    }
    const profiling = args['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${process.cwd()}`] : []
    authCore = await startChild('service.ts', ['auth-core'], { ...common, ...HASHING_ENV, AUTH_CORE_PORT: '0' }, { execArgv: profiling, nice: HASHING_NICE })
    children.push(authCore.process)
    const gatewayEnv = { ...common, PORT: '0', AUTH_CORE_URL: authCore.url, RAG_UPSTREAM_URL: upstream.url, ...GATEWAY_ENV }
    // The soak asks for the live heap after a full collection.
    const gatewayArgv = [...profiling, ...GATEWAY_FLAGS, ...(SOAK_SECONDS === null ? [] : ['--expose-gc'])]
    const gatewayOptions = { execArgv: gatewayArgv, bundle: args.bundle ? await bundleService() : undefined }
    const gateway = await startChild('service.ts', ['gateway'], gatewayEnv, gatewayOptions)
    children.push(gateway.process)
    const services = [gateway.process, authCore.process]
    const query = `${gateway.url}/api/v1/query`
    // The same gateway with metrics (every request recorded) and tracing (one request in ten sampled,
    // as the SDK's standard variables say, its spans exported to a local collector: another trivial
    // upstream, answering 200), for public-observed/public.
    let observedGateway: Awaited<ReturnType<typeof startChild>> | undefined
    if (selected('public-observed')) {
      const collector = await startChild('upstream.ts', [], {})
      children.push(collector.process)
      observedGateway = await startChild('service.ts', ['gateway'], { ...gatewayEnv, METRICS_PORT: '0', OTEL_EXPORTER_OTLP_ENDPOINT: collector.url, ...OBSERVED_SAMPLING }, gatewayOptions)
      children.push(observedGateway.process)
      await run({ url: `${observedGateway.url}/api/v1/query` }, 1)
    }

    // Readers for authed-many and the soak: real sessions, made inside auth-core.
    if (selected('authed-many') || SOAK_SECONDS !== null) {
      log(`seeding ${READERS} readers (user, credential account, session each) through auth-core's better-auth`)
      const many = await seedReaders(authCore.process, 'many', READERS, PASSWORD)
      readers = many.readers
      seeded.push(...readers)
      log(`  ${READERS} readers in ${seconds(many.ms)} (${Math.round(READERS / (many.ms / 1000))} per second)`)
      await checkSession(gateway.url, readers[readers.length - 1])
    }

    if (SOAK_SECONDS !== null) {
      const started = Date.now()
      const tokens = await clientTokens(gateway.url, readers, SOAK_CLIENT_TOKENS)
      log(`  ${tokens.length} distinct client tokens from /auth/jwt in ${seconds(Date.now() - started)}`)
      const cookieName = readers[0].cookie.slice(0, readers[0].cookie.indexOf('='))
      const rotation = new Rotation(shuffled([
        ...readers.map((reader) => ({ cookie: reader.cookie })),
        ...tokens.map((token) => ({ authorization: `Bearer ${token}` })),
        ...forgedCookies(cookieName, SOAK_FORGED_COOKIES).map((cookie) => ({ cookie }))
      ]))
      log('warm-up')
      await run({ url: query }, 3)
      await settle(services)
      log(`soak: ${SOAK_SECONDS} s over ${rotation.size} credentials (${readers.length} session cookies, ${tokens.length} client tokens, ${SOAK_FORGED_COOKIES} forged cookies)`)
      const samples = await soak(gateway.process, query, rotation, SOAK_SECONDS, log)
      const out = [
        `auth-gateway soak: ${SOAK_SECONDS} s, ${CONNECTIONS} connections, the gateway's memory in MB (caches: sessions/unknown cookies/revocations/verified tokens)`,
        `gateway: ${[...Object.entries(GATEWAY_ENV).map(([k, v]) => `${k}=${v}`), 'node', ...GATEWAY_FLAGS, args.bundle ? 'bundle.mjs (--bundle)' : '--import=tsx service.ts'].join(' ')}`,
        '',
        ...soakTable(samples)
      ]
      const errors = samples.reduce((sum, s) => sum + s.errors, 0)
      if (errors > 0) out.push('', `WARNING: ${errors} requests failed or answered non-2xx.`)
      process.stdout.write(`${out.join('\n')}\n`)
      if (args.json !== undefined) {
        const report = { mode: 'soak', seconds: SOAK_SECONDS, connections: CONNECTIONS, readers: readers.length, clientTokens: tokens.length, forgedCookies: SOAK_FORGED_COOKIES, redis: args.redis !== undefined, gatewayFlags: GATEWAY_FLAGS, gatewayEnv: GATEWAY_ENV, bundle: args.bundle, samples }
        writeFileSync(args.json, `${JSON.stringify(report, null, 2)}\n`)
      }
      return
    }

    const nodeProxy = await startChild('reference-proxy.ts', ['node', upstream.url], {})
    children.push(nodeProxy.process)
    const fastifyProxy = await startChild('reference-proxy.ts', ['fastify', upstream.url], {})
    children.push(fastifyProxy.process)
    const nginx = await startNginx(upstream.url)
    children.push(nginx?.process)
    nginxDir = nginx?.dir
    // Two more gateways behind HAProxy, trusting its address; the first one measures the proxy alone.
    if ((selected('haproxy-1') || selected('haproxy-2')) && haproxyInstalled()) {
      const pair: Child[] = []
      for (let i = 0; i < 2; i++) {
        pair.push(await startChild('service.ts', ['gateway'], { ...gatewayEnv, TRUST_PROXY: HAPROXY_SOURCE }, gatewayOptions))
        children.push(pair[i].process)
      }
      replicas = await startReplicas([pair[0], pair[1]])
      services.push(...pair.map((replica) => replica.process))
    }

    // A reader with a session cookie and a bearer token, who signs in with its password too.
    const reader = await seedReaders(authCore.process, 'reader', 1, PASSWORD)
    seeded.push(...reader.readers)
    const cookie = reader.readers[0].cookie
    const bearer = await clientToken(gateway.url, cookie)
    const signInBody = JSON.stringify({ email: `${reader.emailPrefix}0@example.com`, password: PASSWORD })
    const proxies = replicas
    const manySessions = readers.length === 0 ? undefined : new Rotation(readers.map((reader) => ({ cookie: reader.cookie })))

    const observedQuery = observedGateway === undefined ? undefined : `${observedGateway.url}/api/v1/query`
    const scenarios: Record<Scenario, (() => Promise<Run>) | undefined> = {
      direct: () => run({ url: `${upstream.url}/api/v1/query` }),
      nginx: nginx === undefined ? undefined : () => run({ url: `${nginx.url}/api/v1/query` }),
      'node-proxy': () => run({ url: `${nodeProxy.url}/api/v1/query` }),
      'fastify-proxy': () => run({ url: `${fastifyProxy.url}/api/v1/query` }),
      public: () => run({ url: query }),
      'public-observed': observedQuery === undefined ? undefined : () => run({ url: observedQuery }),
      authed: () => run({ url: query, headers: { cookie } }),
      bearer: () => run({ url: query, headers: { authorization: `Bearer ${bearer}` } }),
      // Every request the next of the readers' sessions: the session cache sees each again only after all the others.
      'authed-many': manySessions === undefined ? undefined : () => run({ url: query, rotate: manySessions }),
      profile: () => run({ url: `${gateway.url}/api/v1/profile`, method: 'GET', headers: { cookie } }),
      signin: () => run({ url: `${gateway.url}/auth/sign-in/email`, body: signInBody, headers: { origin: 'http://localhost:3000' } }),
      'verify-bound': () => verifyBound(),
      'public-under-signin': async () => {
        const [publicRun] = await Promise.all([
          run({ url: query }),
          run({ url: `${gateway.url}/auth/sign-in/email`, body: signInBody, headers: { origin: 'http://localhost:3000' }, connections: 10 })
        ])
        return publicRun
      },
      'public-fixed-rate': () => run({ url: query, overallRate: 1000 }),
      // The same load straight at the upstream: what this machine's loopback and scheduler add on their own.
      'direct-fixed-rate': () => run({ url: `${upstream.url}/api/v1/query`, overallRate: 1000 }),
      'haproxy-1': proxies === undefined ? undefined : () => run({ url: `${proxies.one.url}/api/v1/query` }),
      'haproxy-2': proxies === undefined ? undefined : () => run({ url: `${proxies.two.url}/api/v1/query` })
    }

    // Warm-up, not measured: JIT, keep-alive pools and caches in the state a running gateway is in.
    log('warm-up')
    await run({ url: query }, args.quick ? 1 : 3)
    await run({ url: query, headers: { cookie } }, 1)
    if (replicas !== undefined) await run({ url: `${replicas.two.url}/api/v1/query` }, args.quick ? 1 : 3)

    const runs: Partial<Record<Scenario, Run[]>> = {}
    const cpuPerRequest: number[] = []
    const lookupsPerRequest: number[] = []
    let rss = 0
    for (let round = 1; round <= ROUNDS; round++) {
      for (const name of SCENARIOS) {
        const scenario = scenarios[name]
        if (scenario === undefined || !selected(name)) continue
        log(`round ${round}/${ROUNDS}: ${name}`)
        await settle(services)
        const [before, coreBefore] = await Promise.all([stats(gateway.process), stats(authCore.process)])
        const figures = await scenario()
        const [after, coreAfter] = await Promise.all([stats(gateway.process), stats(authCore.process)])
        rss = Math.max(rss, after.rss)
        log(`  ${figures.rps.toFixed(0)} req/s, p99 ${figures.p99} ms, gateway RSS ${Math.round(after.rss / 1024 / 1024)} MB`)
        if (name === 'public' && figures.requests > 0) {
          cpuPerRequest.push((after.cpu.user + after.cpu.system - before.cpu.user - before.cpu.system) / figures.requests)
        }
        if (name === 'authed-many' && figures.requests > 0) {
          const lookups = (coreAfter.sessionLookups ?? 0) - (coreBefore.sessionLookups ?? 0)
          lookupsPerRequest.push(lookups / figures.requests)
          log(`  ${lookups} session look-ups in auth-core: ${(100 * lookups / figures.requests).toFixed(0)} % of the requests missed the gateway's cache`)
        }
        ;(runs[name] ??= []).push(figures)
      }
    }

    // The streaming scenarios, in interleaved rounds like the others (this machine's figures drift
    // from one minute to the next): latency figures of a few hundred streams each, then the open streams' memory.
    const streamRounds: Record<'direct' | 'nodeProxy' | 'gateway', StreamFigures[]> = { direct: [], nodeProxy: [], gateway: [] }
    for (let round = 1; round <= ROUNDS; round++) {
      for (const [name, key, base] of [['stream-direct', 'direct', upstream.url], ['stream-node-proxy', 'nodeProxy', nodeProxy.url], ['stream', 'gateway', gateway.url]] as const) {
        if (!selected(name)) continue
        log(`round ${round}/${ROUNDS}: ${name}: ${STREAM_EVENTS} events ${STREAM_INTERVAL_MS} ms apart, ${DURATION} s`)
        await settle(services)
        const figures = await streamLatency(base, DURATION)
        log(`  ${figures.streams} streams, first event p50 ${figures.firstEventP50} ms, p99 ${figures.firstEventP99} ms, end p50 ${figures.totalP50} ms`)
        streamRounds[key].push(figures)
      }
    }
    const streaming: Record<'direct' | 'nodeProxy' | 'gateway', StreamFigures | null> & { open: OpenStreamsFigures | null } = {
      direct: medianStreamFigures(streamRounds.direct),
      nodeProxy: medianStreamFigures(streamRounds.nodeProxy),
      gateway: medianStreamFigures(streamRounds.gateway),
      open: null
    }
    if (selected('streams-open')) {
      log(`streams-open: ${OPEN_STREAMS} streams open at once through the gateway`)
      await settle(services)
      streaming.open = await openStreams(gateway.url, OPEN_STREAMS, async () => (await stats(gateway.process, true)).memory.rss)
      log(`  gateway RSS ${streaming.open.rssBeforeMB} MB before, ${streaming.open.rssOpenMB} MB with all open, ${streaming.open.rssAfterMB} MB after`)
    }

    const result = {} as Record<Scenario, Figures | null>
    for (const name of SCENARIOS) {
      const list = runs[name]
      result[name] = list === undefined
        ? null
        : { rps: median(list.map((f) => f.rps)), p50: median(list.map((f) => f.p50)), p99: median(list.map((f) => f.p99)), errors: list.reduce((sum, f) => sum + f.errors, 0) }
    }
    const ratio = (a: number | undefined, b: number | undefined): number | null => a === undefined || b === undefined || b === 0 ? null : Math.round((a / b) * 100) / 100
    const report = {
      rounds: ROUNDS,
      durationSeconds: DURATION,
      connections: CONNECTIONS,
      nginx: nginx !== undefined,
      haproxy: replicas !== undefined,
      redis: args.redis !== undefined,
      readers: readers.length,
      gatewayFlags: GATEWAY_FLAGS,
      gatewayEnv: GATEWAY_ENV,
      bundle: args.bundle,
      scenarios: result,
      ratios: {
        'public/direct': ratio(result.public?.rps, result.direct?.rps),
        'public/nginx': ratio(result.public?.rps, result.nginx?.rps),
        'public/node-proxy': ratio(result.public?.rps, result['node-proxy']?.rps),
        'public-observed/public': ratio(result['public-observed']?.rps, result.public?.rps),
        'node-proxy/nginx': ratio(result['node-proxy']?.rps, result.nginx?.rps),
        'authed/public': ratio(result.authed?.rps, result.public?.rps),
        'bearer/public': ratio(result.bearer?.rps, result.public?.rps),
        'authed-many/public': ratio(result['authed-many']?.rps, result.public?.rps),
        'signin/verify-bound': ratio(result.signin?.rps, result['verify-bound']?.rps),
        'p99-under-signin/p99-public': ratio(result['public-under-signin']?.p99, result.public?.p99),
        'haproxy-1/public': ratio(result['haproxy-1']?.rps, result.public?.rps),
        'haproxy-2/haproxy-1': ratio(result['haproxy-2']?.rps, result['haproxy-1']?.rps)
      },
      gatewayCpuUsPerReq: cpuPerRequest.length === 0 ? null : Math.round(median(cpuPerRequest)),
      publicFixedRateP99Ms: result['public-fixed-rate']?.p99 ?? null,
      authedManyCacheMisses: lookupsPerRequest.length === 0 ? null : Math.round(median(lookupsPerRequest) * 100) / 100,
      gatewayRssMB: Math.round(rss / 1024 / 1024),
      streaming: {
        events: STREAM_EVENTS,
        intervalMs: STREAM_INTERVAL_MS,
        ...streaming,
        firstEventOverheadP50Ms: overhead(streamRounds.gateway, streamRounds.direct),
        // What one more process on the way costs on this machine: the floor of any proxy's overhead.
        nodeProxyFirstEventOverheadP50Ms: overhead(streamRounds.nodeProxy, streamRounds.direct)
      }
    }

    const rows = Object.entries(result).map(([name, f]) => f === null
      ? `| ${name.padEnd(20)} | ${'absent'.padStart(8)} | ${''.padStart(8)} | ${''.padStart(8)} | ${''.padStart(6)} |`
      : `| ${name.padEnd(20)} | ${f.rps.toFixed(0).padStart(8)} | ${f.p50.toFixed(1).padStart(8)} | ${f.p99.toFixed(1).padStart(8)} | ${String(f.errors).padStart(6)} |`)
    const out = [
      `auth-gateway benchmark: ${ROUNDS} round(s) of ${DURATION} s, ${CONNECTIONS} connections, medians${nginx === undefined ? ' (nginx not installed: column absent)' : ''}`,
      '',
      `| ${'scenario'.padEnd(20)} | ${'req/s'.padStart(8)} | ${'p50 ms'.padStart(8)} | ${'p99 ms'.padStart(8)} | ${'errors'.padStart(6)} |`,
      `|${'-'.repeat(22)}|${'-'.repeat(10)}|${'-'.repeat(10)}|${'-'.repeat(10)}|${'-'.repeat(8)}|`,
      ...rows,
      '',
      ...Object.entries(report.ratios).map(([name, value]) => `${name.padEnd(28)} ${value === null ? 'n/a' : value.toFixed(2)}`),
      `${'gateway CPU µs / public req'.padEnd(28)} ${report.gatewayCpuUsPerReq ?? 'n/a'}`,
      `${'public p99 at 1,000 req/s'.padEnd(28)} ${report.publicFixedRateP99Ms ?? 'n/a'} ms`,
      `${'authed-many cache misses'.padEnd(28)} ${report.authedManyCacheMisses === null ? 'n/a' : `${Math.round(report.authedManyCacheMisses * 100)} % of ${readers.length} sessions' requests`}`,
      `${'gateway RSS'.padEnd(28)} ${report.gatewayRssMB} MB`,
      ...streamLines(report.streaming)
    ]
    const errors = Object.values(result).reduce((sum, f) => sum + (f?.errors ?? 0), 0)
    if (errors > 0) out.push('', `WARNING: ${errors} requests failed or answered non-2xx; the figures above include them.`)
    process.stdout.write(`${out.join('\n')}\n`)
    if (args.json !== undefined) writeFileSync(args.json, `${JSON.stringify(report, null, 2)}\n`)
  } finally {
    if (seeded.length > 0 && authCore !== undefined) {
      // Gone from Postgres (and Redis) again: a shared database does not fill up with bench readers.
      await unseedReaders(authCore.process, seeded).then((ms) => { log(`removed the ${seeded.length} seeded readers in ${seconds(ms)}`) }, (err: unknown) => {
        log(`the seeded readers could not be removed: ${String(err)}`)
      })
    }
    await replicas?.close()
    await Promise.all(children.map(stop))
    if (nginxDir !== undefined) rmSync(nginxDir, { recursive: true, force: true })
    rmSync(dataDir, { recursive: true, force: true })
  }
}

await main()
