import autocannon from 'autocannon'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { HASHING_ENV, HASHING_NICE } from './hashing.ts'
import { freePort } from '../ports.ts'

/*
 * `npm run bench` (DESIGN §8): a trivial upstream, Postgres, auth-core and the gateway (production
 * mode, logs at warn), and nginx as a reference when installed, each in its own process; autocannon
 * drives them from this one. Numbers are for people: nothing here passes or fails.
 */

const NGINX = '/usr/sbin/nginx'
const CONNECTIONS = 50
const BODY = JSON.stringify({ question: 'How does a humanoid robot estimate its joint positions?', k: 4 })
const PASSWORD = 'benchmark password 1'
const SECRET = 'benchmark-secret-of-at-least-thirty-two-characters'
const HERE = new URL('.', import.meta.url).pathname

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    json: { type: 'string' },
    'cpu-prof': { type: 'boolean', default: false },
    only: { type: 'string' },
    duration: { type: 'string' }
  }
})
const ROUNDS = args.quick ? 1 : 3
const DURATION = args.duration !== undefined ? Number(args.duration) : args.quick ? 3 : 10

interface Child {
  url: string
  process: ChildProcess
}

/** Node running one of the bench's scripts; `nice` runs it below the others' CPU priority (see hashing.ts). */
function nodeScript (script: string, argv: string[], env: Record<string, string>, options: { execArgv?: string[], nice?: number, ipc?: boolean } = {}): ChildProcess {
  const args = [...(options.execArgv ?? []), '--import=tsx', join(HERE, script), ...argv]
  return spawn(options.nice === undefined ? process.execPath : 'nice', options.nice === undefined ? args : ['-n', String(options.nice), process.execPath, ...args], {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: options.ipc === true ? ['ignore', 'pipe', 'inherit', 'ipc'] : ['ignore', 'pipe', 'inherit']
  })
}

/** A bench service: answers `stats` messages and prints its URL once listening. */
async function startChild (script: string, argv: string[], env: Record<string, string>, execArgv: string[] = [], nice?: number): Promise<Child> {
  const child = nodeScript(script, argv, env, { execArgv, nice, ipc: true })
  const url = await new Promise<string>((resolve, reject) => {
    let buffered = ''
    child.stdout?.on('data', (chunk: Buffer) => {
      buffered += chunk.toString()
      const line = buffered.split('\n').find((l) => l.startsWith('{"url"'))
      if (line !== undefined) resolve((JSON.parse(line) as { url: string }).url)
    })
    child.once('exit', (code) => { reject(new Error(`${script} ${argv.join(' ')} exited with ${code}`)) })
  })
  return { url, process: child }
}

function stop (child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null) return Promise.resolve()
  return new Promise((resolve) => {
    const timer = setTimeout(() => { child.kill('SIGKILL') }, 5000)
    child.once('exit', () => { clearTimeout(timer); resolve() })
    child.kill('SIGTERM')
  })
}


async function startNginx (upstreamUrl: string): Promise<{ url: string, process: ChildProcess, dir: string } | undefined> {
  if (!existsSync(NGINX)) return undefined
  const dir = mkdtempSync(join(tmpdir(), 'auth-gateway-nginx-'))
  const port = await freePort()
  const upstream = new URL(upstreamUrl)
  writeFileSync(join(dir, 'nginx.conf'), `
worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream bench { server ${upstream.host}; keepalive 128; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://bench;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`)
  const child = spawn(NGINX, ['-p', dir, '-c', join(dir, 'nginx.conf')], { stdio: 'ignore' })
  const url = `http://127.0.0.1:${port}`
  for (let i = 0; i < 50; i++) {
    try {
      await fetch(`${url}/`)
      return { url, process: child, dir }
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
  await stop(child)
  return undefined
}

interface Figures {
  rps: number
  p50: number
  p99: number
  errors: number
}

interface Load {
  url: string
  method?: 'GET' | 'POST'
  headers?: Record<string, string>
  body?: string
  connections?: number
  overallRate?: number
}

async function load (spec: Load, duration = DURATION): Promise<Figures & { requests: number }> {
  const result = await autocannon({
    url: spec.url,
    method: spec.method ?? 'POST',
    headers: { 'content-type': 'application/json', ...spec.headers },
    body: spec.body ?? (spec.method === 'GET' ? undefined : BODY),
    connections: spec.connections ?? CONNECTIONS,
    overallRate: spec.overallRate,
    duration
  })
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors + result.timeouts + result.non2xx,
    requests: result.requests.total
  }
}

/** The raw password-verify rate at the same concurrency, in auth-core's environment: what sign-in cannot beat. */
async function verifyBound (duration = DURATION): Promise<Figures & { requests: number }> {
  const child = nodeScript('verify.ts', [PASSWORD, String(duration), String(CONNECTIONS)], HASHING_ENV, { nice: HASHING_NICE })
  let output = ''
  child.stdout?.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
  if (code !== 0) throw new Error(`verify.ts exited with ${code}`)
  return JSON.parse(output) as Figures & { requests: number }
}

/**
 * Waits (up to 15 s) until the services are idle again: sign-ins still queued in auth-core when a
 * scenario's load stops would otherwise take the CPU of the next scenario.
 */
async function settle (services: ChildProcess[]): Promise<void> {
  const deadline = Date.now() + 15_000
  let before = await Promise.all(services.map(stats))
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 250))
    const after = await Promise.all(services.map(stats))
    const busiest = Math.max(...after.map((s, i) => s.cpu.user + s.cpu.system - before[i].cpu.user - before[i].cpu.system))
    if (busiest < 25_000) return // under 10 % of a core over the last 250 ms
    before = after
  }
}

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

async function stats (child: ChildProcess): Promise<{ cpu: NodeJS.CpuUsage, rss: number }> {
  return new Promise((resolve) => {
    child.once('message', (message) => { resolve(message as { cpu: NodeJS.CpuUsage, rss: number }) })
    child.send('stats')
  })
}

async function main (): Promise<void> {
  const children: Array<ChildProcess | undefined> = []
  let nginxDir: string | undefined
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
      // Production needs a mail server; nothing listens here, and no scenario waits for mail.
      SMTP_URL: 'smtp://127.0.0.1:9',
      REQUIRE_EMAIL_VERIFICATION: 'false',
      DATABASE_URL: databaseUrl,
      BETTER_AUTH_SECRET: SECRET,
      JWT_SECRET: SECRET,
      LOG_LEVEL: 'warn',
      DATA_DIR: dataDir,
      ALLOWED_ORIGINS: 'http://localhost:3000',
      AUTH_RATE_LIMIT_MAX: '1000000000',
      RATE_LIMIT_MAX: '1000000000',
      RAG_RATE_LIMIT_ANON: '1000000000',
      RAG_RATE_LIMIT_USER: '1000000000'
    }
    const profiling = args['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${process.cwd()}`] : []
    const authCore = await startChild('service.ts', ['auth-core'], { ...common, ...HASHING_ENV, AUTH_CORE_PORT: '0' }, profiling, HASHING_NICE)
    children.push(authCore.process)
    const gateway = await startChild('service.ts', ['gateway'], { ...common, PORT: '0', AUTH_CORE_URL: authCore.url, RAG_UPSTREAM_URL: upstream.url }, profiling)
    children.push(gateway.process)
    const nodeProxy = await startChild('reference-proxy.ts', ['node', upstream.url], {})
    children.push(nodeProxy.process)
    const fastifyProxy = await startChild('reference-proxy.ts', ['fastify', upstream.url], {})
    children.push(fastifyProxy.process)
    const nginx = await startNginx(upstream.url)
    children.push(nginx?.process)
    nginxDir = nginx?.dir

    // A reader with a session cookie and a bearer token.
    const email = `bench-${Date.now()}@example.com`
    const signUp = await fetch(`${gateway.url}/auth/sign-up/email`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin: 'http://localhost:3000' },
      body: JSON.stringify({ email, password: PASSWORD, name: 'Bench Reader' })
    })
    if (signUp.status !== 200) throw new Error(`sign-up answered ${signUp.status}: ${await signUp.text()}`)
    const cookie = signUp.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ')
    const jwt = await fetch(`${gateway.url}/auth/jwt`, { headers: { cookie } })
    const bearer = jwt.status === 200 ? ((await jwt.json()) as { token: string }).token : undefined
    const signInBody = JSON.stringify({ email, password: PASSWORD })
    const query = `${gateway.url}/api/v1/query`

    const scenarios: Record<string, (() => Promise<Figures & { requests: number }>) | undefined> = {
      direct: () => load({ url: `${upstream.url}/api/v1/query` }),
      nginx: nginx === undefined ? undefined : () => load({ url: `${nginx.url}/api/v1/query` }),
      'node-proxy': () => load({ url: `${nodeProxy.url}/api/v1/query` }),
      'fastify-proxy': () => load({ url: `${fastifyProxy.url}/api/v1/query` }),
      public: () => load({ url: query }),
      authed: () => load({ url: query, headers: { cookie } }),
      bearer: bearer === undefined ? undefined : () => load({ url: query, headers: { authorization: `Bearer ${bearer}` } }),
      profile: () => load({ url: `${gateway.url}/api/v1/profile`, method: 'GET', headers: { cookie } }),
      signin: () => load({ url: `${gateway.url}/auth/sign-in/email`, body: signInBody, headers: { origin: 'http://localhost:3000' } }),
      'verify-bound': () => verifyBound(),
      'public-under-signin': async () => {
        const [publicRun] = await Promise.all([
          load({ url: query }),
          load({ url: `${gateway.url}/auth/sign-in/email`, body: signInBody, headers: { origin: 'http://localhost:3000' }, connections: 10 })
        ])
        return publicRun
      },
      'public-fixed-rate': () => load({ url: query, overallRate: 1000 }),
      // The same load straight at the upstream: what this machine's loopback and scheduler add on their own.
      'direct-fixed-rate': () => load({ url: `${upstream.url}/api/v1/query`, overallRate: 1000 })
    }

    // Warm-up, not measured: JIT, keep-alive pools and caches in the state a running gateway is in.
    process.stderr.write('warm-up\n')
    await load({ url: query }, args.quick ? 1 : 3)
    await load({ url: query, headers: { cookie } }, 1)

    const runs: Record<string, Array<Figures & { requests: number }>> = {}
    const cpuPerRequest: number[] = []
    let rss = 0
    for (let round = 1; round <= ROUNDS; round++) {
      for (const [name, run] of Object.entries(scenarios)) {
        if (run === undefined || (args.only !== undefined && !args.only.split(',').includes(name))) continue
        process.stderr.write(`round ${round}/${ROUNDS}: ${name}\n`)
        await settle([gateway.process, authCore.process])
        const before = await stats(gateway.process)
        const figures = await run()
        const after = await stats(gateway.process)
        rss = Math.max(rss, after.rss)
        process.stderr.write(`  ${figures.rps.toFixed(0)} req/s, p99 ${figures.p99} ms, gateway RSS ${Math.round(after.rss / 1024 / 1024)} MB\n`)
        if (name === 'public' && figures.requests > 0) {
          cpuPerRequest.push((after.cpu.user + after.cpu.system - before.cpu.user - before.cpu.system) / figures.requests)
        }
        ;(runs[name] ??= []).push(figures)
      }
    }

    const result: Record<string, Figures | null> = {}
    for (const name of Object.keys(scenarios)) {
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
      scenarios: result,
      ratios: {
        'public/direct': ratio(result.public?.rps, result.direct?.rps),
        'public/nginx': ratio(result.public?.rps, result.nginx?.rps),
        'public/node-proxy': ratio(result.public?.rps, result['node-proxy']?.rps),
        'node-proxy/nginx': ratio(result['node-proxy']?.rps, result.nginx?.rps),
        'authed/public': ratio(result.authed?.rps, result.public?.rps),
        'bearer/public': ratio(result.bearer?.rps, result.public?.rps),
        'signin/verify-bound': ratio(result.signin?.rps, result['verify-bound']?.rps),
        'p99-under-signin/p99-public': ratio(result['public-under-signin']?.p99, result.public?.p99)
      },
      gatewayCpuUsPerReq: cpuPerRequest.length === 0 ? null : Math.round(median(cpuPerRequest)),
      publicFixedRateP99Ms: result['public-fixed-rate']?.p99 ?? null,
      gatewayRssMB: Math.round(rss / 1024 / 1024)
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
      `${'gateway RSS'.padEnd(28)} ${report.gatewayRssMB} MB`
    ]
    const errors = Object.values(result).reduce((sum, f) => sum + (f?.errors ?? 0), 0)
    if (errors > 0) out.push('', `WARNING: ${errors} requests failed or answered non-2xx; the figures above include them.`)
    process.stdout.write(`${out.join('\n')}\n`)
    if (args.json !== undefined) writeFileSync(args.json, `${JSON.stringify(report, null, 2)}\n`)
  } finally {
    await Promise.all(children.map(stop))
    if (nginxDir !== undefined) rmSync(nginxDir, { recursive: true, force: true })
    rmSync(dataDir, { recursive: true, force: true })
  }
}

await main()
