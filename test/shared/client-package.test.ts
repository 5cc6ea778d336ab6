import t from 'tap'
import { execFile } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const run = promisify(execFile)
const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const PACKAGE = '@auth-gateway/client'
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
const STEP_TIMEOUT = 90_000

// A child npm must not inherit the npm_* settings of an `npm test` around this run (prefix, workspace…).
const CHILD_ENV = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.toLowerCase().startsWith('npm_')))

interface LockEntry {
  name?: string
  version?: string
  dependencies?: Record<string, string>
  optionalDependencies?: Record<string, string>
  peerDependencies?: Record<string, string>
}

async function sh (command: string, args: string[], cwd: string): Promise<string> {
  const { stdout } = await run(command, args, { cwd, env: CHILD_ENV, timeout: STEP_TIMEOUT, maxBuffer: 16 * 1024 * 1024 })
  return stdout
}

function versionOf (dir: string): string {
  return (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string }).version
}

/** Where Node would find `name` from the package installed at `from` (a lockfile key). */
function resolve (packages: Record<string, LockEntry>, from: string, name: string): string | undefined {
  let base = from
  for (;;) {
    const candidate = `${base === '' ? '' : `${base}/`}node_modules/${name}`
    if (candidate in packages) return candidate
    if (base === '') return undefined
    const at = base.lastIndexOf('node_modules/')
    base = at <= 0 ? '' : base.slice(0, at - 1)
  }
}

/** Every installed package `start` needs, itself included. */
function closure (packages: Record<string, LockEntry>, start: string): Set<string> {
  const seen = new Set<string>()
  const queue = [start]
  for (let key = queue.pop(); key !== undefined; key = queue.pop()) {
    if (seen.has(key)) continue
    seen.add(key)
    const entry = packages[key] ?? {}
    for (const name of Object.keys({ ...entry.dependencies, ...entry.optionalDependencies, ...entry.peerDependencies })) {
      const found = resolve(packages, key, name)
      if (found !== undefined) queue.push(found)
    }
  }
  return seen
}

t.test('the packed client installs next to better-auth alone, runs and typechecks', { timeout: 240_000 }, async (t) => {
  const dist = join(ROOT, 'shared', 'client', 'dist', 'client.js')
  // Packed with --ignore-scripts: `prepack` would rebuild dist/ under the other tests that import it.
  t.ok(existsSync(dist), 'shared/client/dist is built (npm install or `npm run build:client`)')
  if (!existsSync(dist)) return

  // Not test/helper.ts's tempDir: this test needs nothing of the server, not even to load it.
  const dir = mkdtempSync(join(tmpdir(), 'auth-gateway-client-package-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const [packed] = JSON.parse(await sh('npm', ['pack', '--workspace', PACKAGE, '--ignore-scripts', '--json', '--pack-destination', dir], ROOT)) as Array<{ filename: string, files: Array<{ path: string }> }>
  t.same(packed.files.map((f) => f.path).sort(), ['dist/client.d.ts', 'dist/client.js', 'dist/profile.d.ts', 'dist/profile.js', 'package.json'], 'the tarball holds the build and package.json only')

  const site = join(dir, 'site')
  mkdirSync(site)
  writeFileSync(join(site, 'package.json'), JSON.stringify({ name: 'client-package-check', private: true, type: 'module' }))
  const betterAuth = versionOf(join(ROOT, 'node_modules', 'better-auth'))
  await sh('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', join(dir, packed.filename), `better-auth@${betterAuth}`], site)

  const packages = (JSON.parse(readFileSync(join(site, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> }).packages
  const installed = Object.keys(packages).filter((key) => key !== '')
  const names = new Set(installed.map((key) => packages[key]?.name ?? key.slice(key.lastIndexOf('node_modules/') + 'node_modules/'.length)))
  t.comment(`${installed.length} packages installed`)
  const needed = closure(packages, 'node_modules/better-auth')
  const beyondBetterAuth = installed.filter((key) => !needed.has(key))
  t.same(beyondBetterAuth, [`node_modules/${PACKAGE}`], 'the client adds itself and nothing else to what better-auth needs')
  // jose and kysely are not listed: better-auth itself depends on them.
  for (const server of ['fastify', 'pg', 'undici', '@electric-sql/pglite', 'ioredis', 'tsx', 'close-with-grace', '@fastify/cookie', '@fastify/http-proxy']) {
    t.notOk(names.has(server), `no ${server}`)
  }

  const keys = await sh(process.execPath, ['--input-type=module', '-e', `import('${PACKAGE}').then((m) => console.log(JSON.stringify(Object.keys(m).sort())))`], site)
  t.same(JSON.parse(keys), ['NETWORK_ERROR', 'UNEXPECTED_RESPONSE', 'createGatewayClient'], 'Node imports the built ESM')

  writeFileSync(join(site, 'check.ts'), `import { createGatewayClient } from '${PACKAGE}'
import type { GatewayResult, Profile } from '${PACKAGE}'

const gateway = createGatewayClient({ baseURL: 'https://api.example.com' })
const saved: Promise<GatewayResult<Profile>> = gateway.profile.save({ interestArea: 'humanoids', consentGiven: true })
void saved
void gateway.auth.signIn.email
// @ts-expect-error: a Profile's consentGiven is a boolean, so the declarations are not \`any\`
const wrong: Promise<GatewayResult<{ consentGiven: string }>> = gateway.profile.get()
void wrong
`)
  // Node's own resolution and a bundler's (what Docusaurus' tsconfig uses).
  for (const [module, moduleResolution] of [['nodenext', 'nodenext'], ['esnext', 'bundler']]) {
    const { code, output } = await run(process.execPath, [TSC, '--noEmit', '--strict', '--skipLibCheck', '--target', 'es2022', '--lib', 'es2022,dom', '--module', module, '--moduleResolution', moduleResolution, 'check.ts'], { cwd: site, env: CHILD_ENV, timeout: STEP_TIMEOUT })
      .then(({ stdout }) => ({ code: 0, output: stdout }), (err: { code?: unknown, stdout?: string }) => ({ code: err.code, output: err.stdout ?? String(err) }))
    t.equal(code, 0, `tsc --moduleResolution ${moduleResolution} accepts the declarations${output === '' ? '' : `:\n${output}`}`)
  }
})
