import t from 'tap'
import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { SERVER_DATABASE_URL, tempDir } from '../helper.ts'

// Keeps `npm run bench` working: a one-second-per-scenario run, checked for the shape of its report.
// No figures are judged here; they are for people (README).
t.test('npm run bench -- --quick writes the report', async (t) => {
  const out = join(tempDir(t), 'bench.json')
  const env: Record<string, string> = { PATH: process.env.PATH ?? '' }
  if (SERVER_DATABASE_URL !== undefined) env.DATABASE_URL = SERVER_DATABASE_URL
  const { code, output } = await new Promise<{ code: number | null, output: string }>((resolve) => {
    const child = spawn(process.execPath, ['--import=tsx', 'test/bench/run.ts', '--quick', '--duration', '1', '--json', out], { env })
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
    child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
    child.on('close', (exit) => { resolve({ code: exit, output }) })
  })
  t.equal(code, 0, output)
  t.match(output, /\| public\s+\|\s+\d+/, 'the table is printed')
  const report = JSON.parse(readFileSync(out, 'utf8')) as {
    scenarios: Record<string, { rps: number, p50: number, p99: number, errors: number } | null>
    ratios: Record<string, number | null>
    gatewayCpuUsPerReq: number | null
    publicFixedRateP99Ms: number | null
    gatewayRssMB: number
  }
  for (const name of ['direct', 'public', 'authed', 'bearer', 'profile', 'signin', 'public-under-signin', 'public-fixed-rate']) {
    const figures = report.scenarios[name]
    t.ok(figures !== null && figures !== undefined, `${name} ran`)
    t.type(figures?.rps, 'number')
    t.type(figures?.p99, 'number')
  }
  t.equal(report.scenarios.nginx === null, !existsSync('/usr/sbin/nginx'), 'nginx is measured exactly when installed')
  t.same(Object.keys(report.ratios).sort(), ['authed/public', 'bearer/public', 'node-proxy/nginx', 'p99-under-signin/p99-public', 'public/direct', 'public/nginx', 'public/node-proxy', 'signin/verify-bound'])
  t.ok((report.ratios['public/direct'] ?? 0) > 0)
  t.ok((report.gatewayCpuUsPerReq ?? 0) > 0)
  t.ok(report.gatewayRssMB > 0)
  t.equal(report.scenarios.public?.errors, 0, 'the public route answered 2xx throughout')
})
