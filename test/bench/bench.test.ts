import t from 'tap'
import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { SERVER_DATABASE_URL, tempDir, testDatabase } from '../helper.ts'

// Keeps `npm run bench` working without running it in full (that takes minutes: see README.md here):
// the two cheapest scenarios for one second each, checked for the shape of the report. No figures
// are judged; they are for people.
const ONLY = ['direct', 'public', 'stream']
const SCENARIOS = ['direct', 'nginx', 'node-proxy', 'fastify-proxy', 'public', 'public-observed', 'authed', 'bearer', 'authed-many', 'profile', 'signin', 'verify-bound', 'public-under-signin', 'public-fixed-rate', 'direct-fixed-rate', 'haproxy-1', 'haproxy-2']

t.test(`npm run bench -- --quick --duration 1 --only ${ONLY.join(',')} writes the report`, async (t) => {
  const out = join(tempDir(t), 'bench.json')
  const env: Record<string, string> = { PATH: process.env.PATH ?? '' }
  // A database of the test's own on the machine's Postgres (the bench migrates and signs up into it);
  // without one the bench starts its own embedded database.
  if (SERVER_DATABASE_URL !== undefined) env.DATABASE_URL = await testDatabase(t)
  const { code, output } = await new Promise<{ code: number | null, output: string }>((resolve) => {
    const child = spawn(process.execPath, ['--import=tsx', 'test/bench/run.ts', '--quick', '--duration', '1', '--only', ONLY.join(','), '--json', out], { env })
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
    child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
    child.on('close', (exit) => { resolve({ code: exit, output }) })
  })
  t.equal(code, 0, output)
  t.match(output, /\| public\s+\|\s+\d+/, 'the table is printed')
  const report = JSON.parse(readFileSync(out, 'utf8')) as {
    rounds: number
    durationSeconds: number
    nginx: boolean
    scenarios: Record<string, { rps: number, p50: number, p99: number, errors: number } | null>
    ratios: Record<string, number | null>
    gatewayCpuUsPerReq: number | null
    publicFixedRateP99Ms: number | null
    gatewayRssMB: number
    streaming: { direct: unknown, gateway: { streams: number, firstEventP50: number, totalP50: number, errors: number } | null, open: unknown }
  }
  t.same({ rounds: report.rounds, durationSeconds: report.durationSeconds }, { rounds: 1, durationSeconds: 1 }, '--quick --duration 1: one round of one second')
  t.same(Object.keys(report.scenarios).sort(), [...SCENARIOS].sort(), 'every scenario is in the report')
  for (const name of SCENARIOS.filter((scenario) => scenario !== 'stream')) {
    const figures = report.scenarios[name]
    if (ONLY.includes(name)) {
      t.type(figures?.rps, 'number', `${name} ran`)
      t.ok((figures?.rps ?? 0) > 0, `${name}: requests were answered`)
      t.type(figures?.p99, 'number')
    } else {
      t.equal(figures, null, `${name} left out by --only`)
    }
  }
  t.equal(report.nginx, existsSync('/usr/sbin/nginx'), 'nginx is started exactly when installed')
  t.same(Object.keys(report.ratios).sort(), ['authed-many/public', 'authed/public', 'bearer/public', 'haproxy-1/public', 'haproxy-2/haproxy-1', 'node-proxy/nginx', 'p99-under-signin/p99-public', 'public-observed/public', 'public/direct', 'public/nginx', 'public/node-proxy', 'signin/verify-bound'])
  t.ok((report.ratios['public/direct'] ?? 0) > 0, 'the public/direct ratio')
  t.equal(report.ratios['authed/public'], null, 'ratios of scenarios that did not run are null')
  t.ok((report.gatewayCpuUsPerReq ?? 0) > 0)
  t.ok(report.gatewayRssMB > 0)
  t.equal(report.scenarios.public?.errors, 0, 'the public route answered 2xx throughout')
  const streamed = report.streaming.gateway
  t.ok((streamed?.streams ?? 0) > 0, 'streams were read through the gateway')
  t.equal(streamed?.errors, 0, 'every stream answered 200')
  t.ok((streamed?.totalP50 ?? 0) >= 190, 'a stream lasts its 20 events 10 ms apart')
  t.ok((streamed?.firstEventP50 ?? Infinity) < (streamed?.totalP50 ?? 0), 'the first event comes before the end: streamed, not buffered')
  t.same([report.streaming.direct, report.streaming.open], [null, null], 'the streaming scenarios not selected are null')
})
