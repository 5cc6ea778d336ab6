import t from 'tap'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { runScript } from './cli.ts'
import { JWT_TEST_SECRET, SECRET, tempDir, testDatabase, TEST_ORIGIN, uniqueEmail } from './helper.ts'
import type { Teardown } from './helper.ts'
import { freePort } from './ports.ts'

// `npm run build` (issue 17, deliver 1): the services compiled to JavaScript and run by plain
// `node` (no tsx, no npm between the signal and the process) pass the smoke checker, and stop on
// SIGTERM with exit code 0.
const ROOT = fileURLToPath(new URL('../', import.meta.url))
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
const STARTUP_MS = 60_000

/** Runs `node file` with `env` only; resolves once `pattern` has been printed. */
async function startCompiled (t: Teardown, file: string, env: Record<string, string>, pattern: RegExp): Promise<ChildProcess> {
  const child = spawn(process.execPath, [file], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  let output = ''
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`${file} printed nothing like ${pattern} within ${STARTUP_MS} ms:\n${output}`)) }, STARTUP_MS)
    const check = (chunk: Buffer): void => {
      output += chunk.toString('utf8')
      if (pattern.test(output)) {
        clearTimeout(timer)
        resolve()
      }
    }
    child.stdout?.on('data', check)
    child.stderr?.on('data', check)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`${file} exited with ${String(code)}:\n${output}`))
    })
  })
  return child
}

t.test('npm run build compiles the services; plain node runs them, they pass the smoke checker and stop on SIGTERM', async (t) => {
  // Under node_modules, so the output resolves the project's packages as dist/ does.
  const cache = join(ROOT, 'node_modules', '.cache')
  mkdirSync(cache, { recursive: true })
  const out = mkdtempSync(join(cache, 'auth-gateway-build-'))
  t.teardown(() => { rmSync(out, { recursive: true, force: true }) })
  const built = await new Promise<{ code: number | null, output: string }>((resolve) => {
    const child = spawn(process.execPath, [TSC, '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', out], { cwd: ROOT })
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
    child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
    child.on('close', (code) => { resolve({ code, output }) })
  })
  t.equal(built.code, 0, `tsc -p tsconfig.build.json exits 0${built.output === '' ? '' : `:\n${built.output}`}`)
  for (const file of ['gateway/server.js', 'auth-core/server.js', 'gateway/cli/migrate.js', 'gateway/cli/start.js', 'gateway/cli/healthcheck.js']) t.ok(existsSync(join(out, file)), `${file} is built`)
  t.notMatch(readFileSync(join(out, 'gateway/app.js'), 'utf8'), /from '[^']+\.ts'/, 'relative imports point at .js files')
  const scripts = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts
  t.equal(scripts['start:gateway'], 'node dist/gateway/server.js', 'npm run start:gateway runs the output with plain node')
  t.equal(scripts['start:auth-core'], 'node dist/auth-core/server.js')
  t.equal(scripts.build, 'tsc -p tsconfig.build.json')

  const [authCorePort, gatewayPort] = [await freePort(), await freePort()]
  const env = {
    NODE_ENV: 'production',
    DATABASE_URL: await testDatabase(t),
    DATA_DIR: tempDir(t),
    BETTER_AUTH_SECRET: SECRET,
    JWT_SECRET: JWT_TEST_SECRET,
    ALLOWED_ORIGINS: TEST_ORIGIN,
    PUBLIC_URL: `http://localhost:${gatewayPort}`,
    // Production needs a mail server; nothing listens there and the smoke checker's account needs no mail.
    SMTP_URL: 'smtp://127.0.0.1:9',
    REQUIRE_EMAIL_VERIFICATION: 'false',
    LOG_LEVEL: 'info'
  }
  const migrated = await new Promise<number | null>((resolve) => {
    const child = spawn(process.execPath, [join(out, 'gateway/cli/migrate.js')], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: 'ignore' })
    child.on('close', resolve)
  })
  t.equal(migrated, 0, 'the compiled migrate runs')
  const authCore = await startCompiled(t, join(out, 'auth-core/server.js'), { ...env, AUTH_CORE_PORT: String(authCorePort) }, /Server listening/)
  const gateway = await startCompiled(t, join(out, 'gateway/server.js'), { ...env, PORT: String(gatewayPort), AUTH_CORE_URL: `http://127.0.0.1:${authCorePort}` }, /Server listening/)

  // The container's HEALTHCHECK (Dockerfile, docker-compose.yml): the compiled script, plain node.
  const healthcheck = async (service: string, serviceEnv: Record<string, string>): Promise<number | null> => await new Promise((resolve) => {
    const child = spawn(process.execPath, [join(out, 'gateway/cli/healthcheck.js'), service], { env: { PATH: process.env.PATH ?? '', ...serviceEnv }, stdio: 'ignore' })
    child.on('close', resolve)
  })
  t.equal(await healthcheck('gateway', { ...env, PORT: String(gatewayPort) }), 0, 'the compiled healthcheck finds the gateway healthy')
  t.equal(await healthcheck('auth-core', { ...env, AUTH_CORE_PORT: String(authCorePort) }), 0, 'the compiled healthcheck finds auth-core healthy')

  const smoke = await runScript('gateway/cli/smoke.ts', ['--base-url', `http://127.0.0.1:${gatewayPort}`, '--email', uniqueEmail('compiled'), '--password', 'correct horse battery'])
  t.equal(smoke.code, 0, `the smoke checker passes against the compiled services:\n${smoke.stdout}${smoke.stderr}`)

  for (const [name, child] of [['gateway', gateway], ['auth-core', authCore]] as const) {
    const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
    child.kill('SIGTERM')
    const [code, signal] = await exited
    t.same({ code, signal }, { code: 0, signal: null }, `${name}: SIGTERM reaches node, which drains and exits 0`)
  }
  t.equal(await healthcheck('gateway', { ...env, PORT: String(gatewayPort) }), 1, 'the healthcheck fails once the gateway has stopped')
})
