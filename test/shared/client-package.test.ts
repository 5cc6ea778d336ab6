import t from 'tap'
import type { Test } from 'tap'
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { tempDir } from '../temp-dir.ts'

const run = promisify(execFile)
const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const PACKAGE = '@auth-gateway/client'
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
const STEP_TIMEOUT = 90_000
// Installed sites, by what decides npm's answer. Outside the project: from inside it, Node and tsc
// would also find the project's node_modules (and its @types) and hide a missing dependency.
const SITES = join(tmpdir(), `auth-gateway-client-sites-${process.getuid?.() ?? 'user'}`)
const SITE_PACKAGE = JSON.stringify({ name: 'client-package-check', private: true, type: 'module' })
const INSTALL_FLAGS = ['--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error']
const UNUSED_SITE_MS = 24 * 60 * 60 * 1000

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

/** Creates `dir` (0700) or checks it: this test runs code from it, so only the current user may write there. */
function privateDir (dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const stat = lstatSync(dir)
  if (!stat.isDirectory() || stat.uid !== process.getuid?.() || (stat.mode & 0o022) !== 0) {
    throw new Error(`${dir} must be a directory of the current user that no one else may write to`)
  }
}

/**
 * A site (an empty ESM project) with the tarball and better-auth installed. npm's answer depends on
 * the tarball's bytes (`npm pack` is reproducible), better-auth's version and npm's own, so a site
 * installed for the same key is reused: the checks then run again on that lockfile and tree, and a
 * change to the client's build or package.json is a new key, installed afresh.
 */
async function installedSite (t: Test, tarball: string, integrity: string, betterAuth: string, npm: string): Promise<{ site: string, reused: boolean }> {
  const key = createHash('sha256').update(JSON.stringify({ integrity, betterAuth, npm, node: process.version, SITE_PACKAGE, INSTALL_FLAGS })).digest('hex').slice(0, 24)
  const site = join(SITES, key)
  privateDir(SITES)
  if (existsSync(join(site, 'package-lock.json'))) {
    const now = new Date()
    utimesSync(join(site, 'package.json'), now, now)
    return { site, reused: true }
  }
  const installing = mkdtempSync(join(SITES, 'installing-'))
  t.teardown(() => { rmSync(installing, { recursive: true, force: true }) })
  writeFileSync(join(installing, 'package.json'), SITE_PACKAGE)
  await sh('npm', ['install', ...INSTALL_FLAGS, tarball, `better-auth@${betterAuth}`], installing)
  try {
    renameSync(installing, site)
  } catch (err) {
    // Another run installed the same key meanwhile: theirs is as good.
    if (!existsSync(join(site, 'package-lock.json'))) throw err
  }
  // Sites of earlier builds (and installs a killed run left) go once unused for a day: another
  // checkout may still be using its own.
  for (const name of readdirSync(SITES)) {
    const lastUsed = statSync(join(SITES, name, 'package.json'), { throwIfNoEntry: false })?.mtimeMs ?? 0
    if (name !== key && Date.now() - lastUsed > UNUSED_SITE_MS) {
      rmSync(join(SITES, name), { recursive: true, force: true })
    }
  }
  return { site, reused: false }
}

t.test('the packed client installs next to better-auth alone, runs and typechecks', { timeout: 240_000 }, async (t) => {
  const dist = join(ROOT, 'shared', 'client', 'dist', 'client.js')
  // Packed with --ignore-scripts: `prepack` would rebuild dist/ under the other tests that import it.
  t.ok(existsSync(dist), 'shared/client/dist is built (npm install or `npm run build:client`)')
  if (!existsSync(dist)) return

  const dir = tempDir(t, 'auth-gateway-client-package-')
  const [packOutput, npm] = await Promise.all([
    sh('npm', ['pack', '--workspace', PACKAGE, '--ignore-scripts', '--json', '--pack-destination', dir], ROOT),
    sh('npm', ['--version'], ROOT)
  ])
  const [packed] = JSON.parse(packOutput) as Array<{ filename: string, integrity: string, files: Array<{ path: string }> }>
  t.same(packed.files.map((f) => f.path).sort(), ['dist/client.d.ts', 'dist/client.js', 'dist/failure.d.ts', 'dist/failure.js', 'dist/http.d.ts', 'dist/http.js', 'dist/profile.d.ts', 'dist/profile.js', 'dist/rag-stream.d.ts', 'dist/rag-stream.js', 'dist/tokens.d.ts', 'dist/tokens.js', 'package.json'], 'the tarball holds the build and package.json only')

  const betterAuth = versionOf(join(ROOT, 'node_modules', 'better-auth'))
  const { site, reused } = await installedSite(t, join(dir, packed.filename), packed.integrity, betterAuth, npm.trim())
  const packages = (JSON.parse(readFileSync(join(site, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> }).packages
  const installed = Object.keys(packages).filter((key) => key !== '')
  const names = new Set(installed.map((key) => packages[key]?.name ?? key.slice(key.lastIndexOf('node_modules/') + 'node_modules/'.length)))
  t.comment(`${installed.length} packages installed${reused ? ` (the install of this same tarball, kept in ${site})` : ''}`)
  const needed = closure(packages, 'node_modules/better-auth')
  const beyondBetterAuth = installed.filter((key) => !needed.has(key))
  t.same(beyondBetterAuth, [`node_modules/${PACKAGE}`], 'the client adds itself and nothing else to what better-auth needs')
  // jose and kysely are not listed: better-auth itself depends on them.
  for (const server of ['fastify', 'pg', 'undici', '@electric-sql/pglite', 'ioredis', 'tsx', 'close-with-grace', '@fastify/cookie', '@fastify/http-proxy']) {
    t.notOk(names.has(server), `no ${server}`)
  }

  // The site may be shared with another run: this run's files go in a folder of its own, from which
  // both resolutions still find the site's node_modules (and its package.json, "type": "module").
  const checks = mkdtempSync(join(site, 'check-'))
  t.teardown(() => { rmSync(checks, { recursive: true, force: true }) })
  const check = `import { createGatewayClient, createTokenClient } from '${PACKAGE}'
import type { GatewayResult, Profile, TokenSession } from '${PACKAGE}'

const gateway = createGatewayClient({ baseURL: 'https://api.example.com' })
const saved: Promise<GatewayResult<Profile>> = gateway.profile.save({ interestArea: 'humanoids', consentGiven: true })
void saved
void gateway.auth.signIn.email
// @ts-expect-error: a Profile's consentGiven is a boolean, so the declarations are not \`any\`
const wrong: Promise<GatewayResult<{ consentGiven: string }>> = gateway.profile.get()
void wrong
async function read (): Promise<string[]> {
  const seen: string[] = []
  for await (const event of gateway.rag.stream('/api/v1/query', { question: 'x' }, { signal: AbortSignal.timeout(1000) })) {
    seen.push(event.error === undefined ? event.data : event.error.message)
  }
  return seen
}
void read
const script = createTokenClient({ baseURL: 'https://api.example.com', onSession: (session: TokenSession | null) => { void session } })
const me: Promise<GatewayResult<{ user: { id: string } }>> = script.me()
void me
// @ts-expect-error: a token session's expiresAt is a string
const expires: number | undefined = script.session?.expiresAt
void expires
`
  // Node's own resolution and a bundler's (what Docusaurus' tsconfig uses): two projects of one
  // `tsc --build`, so one process parses the declarations they share (better-auth's, the DOM's).
  // Each has its own copy of the check, so a diagnostic names the resolution it came from.
  const resolutions = ['nodenext', 'bundler'] as const
  for (const moduleResolution of resolutions) {
    const compilerOptions = { noEmit: true, strict: true, skipLibCheck: true, target: 'es2022', lib: ['es2022', 'dom'], module: moduleResolution === 'bundler' ? 'esnext' : 'nodenext', moduleResolution }
    writeFileSync(join(checks, `check-${moduleResolution}.ts`), check)
    writeFileSync(join(checks, `tsconfig.${moduleResolution}.json`), JSON.stringify({ compilerOptions, files: [`check-${moduleResolution}.ts`] }))
  }
  const typechecked = run(process.execPath, [TSC, '--build', ...resolutions.map((name) => `tsconfig.${name}.json`)], { cwd: checks, env: CHILD_ENV, timeout: STEP_TIMEOUT })
    .then(({ stdout }) => ({ code: 0, output: stdout }), (err: { code?: unknown, stdout?: string }) => ({ code: err.code, output: err.stdout ?? String(err) }))

  const keys = await sh(process.execPath, ['--input-type=module', '-e', `import('${PACKAGE}').then((m) => console.log(JSON.stringify(Object.keys(m).sort())))`], site)
  t.same(JSON.parse(keys), ['NETWORK_ERROR', 'STREAM_INTERRUPTED', 'UNEXPECTED_RESPONSE', 'createGatewayClient', 'createTokenClient'], 'Node imports the built ESM')

  const { code, output } = await typechecked
  for (const moduleResolution of resolutions) {
    const errors = output.split('\n').filter((line) => line.startsWith(`check-${moduleResolution}.ts(`))
    t.same(errors, [], `tsc --moduleResolution ${moduleResolution} accepts the declarations${errors.length === 0 ? '' : `:\n${output}`}`)
  }
  t.equal(code, 0, `tsc --build exits 0${code === 0 ? '' : `:\n${output}`}`)
})
