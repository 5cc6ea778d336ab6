import t from 'tap'
import { execFile } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { isBuiltin } from 'node:module'
import { join, relative, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { parse } from 'yaml'
import { loadConfig } from '../../shared/config.ts'
import type { Env } from '../../shared/config.ts'
import { CLOSE_GRACE_MS } from '../../shared/run.ts'
import { runScript } from '../cli.ts'
import { freePort } from '../ports.ts'
import { tempDir } from '../temp-dir.ts'
import type { Teardown } from '../temp-dir.ts'

/*
 * The container (issue 17, item 2), checked without a Docker engine: the Dockerfile's instructions
 * (multi-stage, a Node LTS runtime with production dependencies only, non-root, tini, a HEALTHCHECK
 * run by node), what it copies against what the build reads and .dockerignore, that the packages the
 * compiled code imports are production dependencies, docker-compose.yml's use of the one image
 * (restart, healthchecks, start order, the secrets each service holds), and the healthcheck script
 * against servers standing in for the services. Nothing here builds or runs an image.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
const HEALTHCHECK_SCRIPT = 'gateway/cli/healthcheck.ts'
// Node's even majors become LTS; 20 reached its end of life in April 2026.
const MIN_LTS_MAJOR = 22
const run = promisify(execFile)
const read = (file: string): string => readFileSync(join(ROOT, file), 'utf8')

interface Instruction {
  keyword: string
  args: string
  line: number
}
interface Stage {
  image: string
  name: string | undefined
  instructions: Instruction[]
}

/**
 * The subset of the Dockerfile syntax the file uses: comments, `\` continuations, global `ARG`s
 * before the first `FROM` (substituted in `FROM`), one stage per `FROM`.
 */
function parseDockerfile (text: string): { args: Record<string, string>, stages: Stage[] } {
  const instructions: Instruction[] = []
  let pending: Instruction | undefined
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) return
    const continued = line.endsWith('\\')
    const body = continued ? line.slice(0, -1).trim() : line
    if (pending === undefined) {
      const [keyword, ...rest] = body.split(/\s+/)
      pending = { keyword: keyword.toUpperCase(), args: rest.join(' '), line: index + 1 }
    } else {
      pending.args = `${pending.args} ${body}`.trim()
    }
    if (!continued) {
      instructions.push(pending)
      pending = undefined
    }
  })
  const args: Record<string, string> = {}
  const stages: Stage[] = []
  for (const instruction of instructions) {
    if (instruction.keyword === 'FROM') {
      const [image, as, name] = instruction.args.replace(/\$\{(\w+)\}/g, (_all, arg: string) => args[arg] ?? '').split(/\s+/)
      stages.push({ image, name: as?.toUpperCase() === 'AS' ? name : undefined, instructions: [] })
    } else if (stages.length === 0) {
      if (instruction.keyword !== 'ARG') throw new Error(`line ${instruction.line}: only ARG may come before the first FROM`)
      const [name, value = ''] = instruction.args.split('=')
      args[name] = value
    } else {
      stages[stages.length - 1].instructions.push(instruction)
    }
  }
  return { args, stages }
}

const dockerfile = parseDockerfile(read('Dockerfile'))
const runtime = dockerfile.stages[dockerfile.stages.length - 1]
const inRuntime = (keyword: string): Instruction[] => runtime.instructions.filter((instruction) => instruction.keyword === keyword)
const last = (keyword: string): Instruction | undefined => inRuntime(keyword).at(-1)
/** The exec form (`["node", "x"]`), the only one the file uses: no shell between tini and node. */
const execForm = (args: string): string[] => JSON.parse(args) as string[]
const healthcheckCommand = (): string[] => execForm(/\bCMD\s+(\[.*\])$/.exec(last('HEALTHCHECK')?.args ?? '')?.[1] ?? 'null') ?? []

t.test('Dockerfile: a build stage, then a Node LTS runtime with production dependencies, non-root, tini and a healthcheck', async (t) => {
  t.ok(dockerfile.stages.length >= 2, 'multi-stage')
  const build = dockerfile.stages.find((stage) => stage.name === 'build')
  t.ok(build, 'a stage named build')
  const buildRuns = build?.instructions.filter((instruction) => instruction.keyword === 'RUN').map((instruction) => instruction.args) ?? []
  t.ok(buildRuns.some((command) => /\bnpm ci\b/.test(command)), 'the build stage installs from the lockfile')
  t.ok(buildRuns.some((command) => /\bnpm run build\b/.test(command)), 'the build stage runs npm run build')

  const tag = /^node:(\d+)(-[a-z]+)*$/.exec(runtime.image)
  t.ok(tag, `the runtime is a node image with its major pinned (${runtime.image})`)
  const major = Number(tag?.[1])
  t.ok(major >= MIN_LTS_MAJOR && major % 2 === 0, `Node ${major} is an LTS line`)
  t.equal(build?.image, runtime.image, 'the build compiles with the Node the runtime runs')

  const runs = inRuntime('RUN').map((instruction) => instruction.args)
  t.ok(runs.some((command) => /\bnpm ci\b/.test(command) && command.includes('--omit=dev') && command.includes('--ignore-scripts')), 'production dependencies only, without prepare (it needs the dev dependency tsc)')
  t.notOk(runs.some((command) => /\bnpm run build\b|\btsc\b|\btsx\b/.test(command)), 'nothing is compiled in the runtime stage')
  t.ok(runs.some((command) => /apt-get install\b.*\btini\b/.test(command)), 'tini comes from Debian')
  const copies = inRuntime('COPY').map((instruction) => instruction.args)
  t.ok(copies.includes('--from=build /app/dist dist'), 'the runtime takes dist/ from the build stage')
  const fromContext = copies.filter((copy) => !copy.startsWith('--from=')).flatMap((copy) => copy.split(/\s+/).slice(0, -1))
  t.ok(fromContext.every((path) => /(^|\/)package(-lock)?\.json$/.test(path)), `from the context only the manifests npm ci reads, no sources (${fromContext.join(', ')})`)
  t.match(inRuntime('ENV').map((instruction) => instruction.args).join(' '), /\bNODE_ENV=production\b/)

  const user = last('USER')?.args
  t.ok(user !== undefined && !/^(root|0)(:|$)/.test(user), `the services run as a non-root user (${String(user)})`)
  const userLine = last('USER')?.line ?? Infinity
  t.ok(runtime.instructions.every((instruction) => instruction.keyword !== 'RUN' || instruction.line < userLine), 'every RUN happens before USER: nothing after it needs root')
  t.same(execForm(last('ENTRYPOINT')?.args ?? 'null'), ['/usr/bin/tini', '--'], 'tini is PID 1: it forwards SIGTERM to node and reaps')
  t.same(execForm(last('CMD')?.args ?? 'null'), ['node', 'dist/gateway/server.js'], 'the gateway by default, node itself')
  t.same(healthcheckCommand().slice(0, 2), ['node', 'dist/gateway/cli/healthcheck.js'], 'HEALTHCHECK runs node (slim images have no curl)')
  t.match(last('HEALTHCHECK')?.args, /--timeout=\d+s/, 'the healthcheck has a timeout')
  t.equal(last('EXPOSE')?.args, '8000', 'the gateway port is exposed')
})

/** The patterns .dockerignore uses: `**\/`, `*`, no `!` exceptions. A path is out when it or a folder above it matches. */
function dockerignored (patterns: string[], path: string): boolean {
  const parts = path.split('/')
  return patterns.some((pattern) => {
    const regex = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*\*\//g, '(?:.*/)?').replace(/(?<!\.)\*/g, '[^/]*')}$`)
    return parts.some((_part, index) => regex.test(parts.slice(0, index + 1).join('/')))
  })
}

t.test('the build stage copies everything the build reads, .dockerignore keeps none of it out, and the runtime imports production dependencies only', async (t) => {
  const patterns = read('.dockerignore').split('\n').map((line) => line.trim()).filter((line) => line !== '' && !line.startsWith('#'))
  t.notOk(patterns.some((pattern) => pattern.startsWith('!')), 'no exceptions (the check below does not model them)')
  for (const path of ['node_modules', 'shared/client/node_modules', 'dist', 'shared/client/dist', '.data', '.git', '.env']) t.ok(dockerignored(patterns, path), `${path} stays out of the build context`)

  const build = dockerfile.stages.find((stage) => stage.name === 'build')
  const copied = (build?.instructions ?? []).filter((instruction) => instruction.keyword === 'COPY' && !instruction.args.startsWith('--from')).flatMap((instruction) => {
    const parts = instruction.args.split(/\s+/)
    return parts.slice(0, -1)
  })
  for (const path of copied) {
    t.ok(existsSync(join(ROOT, path)), `COPY ${path}: it exists`)
    t.notOk(dockerignored(patterns, path), `COPY ${path}: .dockerignore does not remove it`)
  }

  // The files tsc reads for `npm run build`, without emitting (test/build.test.ts compiles them).
  const { stdout } = await run(process.execPath, [TSC, '-p', join(ROOT, 'tsconfig.build.json'), '--listFilesOnly'], { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 })
  const sources = stdout.split('\n').filter((file) => file !== '').map((file) => relative(ROOT, file).split(sep).join('/')).filter((file) => !file.startsWith('node_modules/'))
  t.ok(sources.includes('gateway/server.ts') && sources.includes('auth-core/server.ts'), 'the build reads the services')
  const outside = sources.filter((file) => !copied.some((path) => file === path || file.startsWith(`${path}/`)) || dockerignored(patterns, file))
  t.same(outside, [], 'every file the build reads is in the build stage')

  const { dependencies } = JSON.parse(read('package.json')) as { dependencies: Record<string, string> }
  const imported = new Set<string>()
  for (const file of sources) {
    const text = read(file)
    // Static imports and re-exports (not `import type`, erased), side-effect imports, import(), require().
    for (const match of text.matchAll(/^\s*(?:import|export)\s+(?!type\s)[^'"]*?\bfrom\s+['"]([^'"]+)['"]|^\s*import\s+['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)|\brequire(?:\.resolve)?\(\s*['"]([^'"]+)['"]\s*\)/gm)) {
      const specifier = match[1] ?? match[2] ?? match[3] ?? match[4]
      if (specifier.startsWith('.') || isBuiltin(specifier)) continue
      const parts = specifier.split('/')
      imported.add(specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0])
    }
  }
  t.ok(imported.has('fastify') && imported.has('better-auth'), 'the import scan sees the services\' packages')
  t.same([...imported].filter((name) => !(name in dependencies)), [], 'every package the compiled code imports is a production dependency (the runtime installs no others)')
})

interface Healthcheck {
  test: string[]
}
interface DependsOn {
  condition: string
}
interface Service {
  image?: string
  build?: string
  pull_policy?: string
  restart?: string
  stop_grace_period?: string
  command?: string[]
  volumes?: string[]
  healthcheck?: Healthcheck
  environment?: Record<string, string>
  depends_on?: string[] | Record<string, DependsOn>
}

const compose = parse(read('docker-compose.yml'), { merge: true }) as { services: Record<string, Service> }
const { services } = compose
const IMAGE_SERVICES = ['migrate', 'auth-core', 'gateway-a', 'gateway-b']
const SECRETS = ['BETTER_AUTH_SECRET', 'JWT_SECRET', 'SMTP_URL'] as const
const USER_ENV: Env = { BETTER_AUTH_SECRET: 'b'.repeat(40), JWT_SECRET: 'j'.repeat(40), SMTP_URL: 'smtp://mailer:secret@mail.example.com:587' }

/** Compose's `${NAME}`, `${NAME:-default}` and `${NAME:?message}`, with what a user sets. */
function substitute (environment: Record<string, string> = {}): Env {
  return Object.fromEntries(Object.entries(environment).map(([name, value]) => [name, String(value).replace(/\$\{(\w+)(?::[-?]([^}]*))?\}/g, (_all, variable: string, fallback: string | undefined) => USER_ENV[variable] ?? fallback ?? '')]))
}

function dependencies (service: Service): Record<string, string> {
  const dependsOn = service.depends_on ?? {}
  if (Array.isArray(dependsOn)) return Object.fromEntries(dependsOn.map((name) => [name, 'service_started']))
  return Object.fromEntries(Object.entries(dependsOn).map(([name, { condition }]) => [name, condition]))
}

t.test('docker-compose.yml: the one image, restarts, healthchecks and the start order', async (t) => {
  t.same(Object.keys(services).sort(), ['auth-core', 'gateway-a', 'gateway-b', 'migrate', 'postgres', 'proxy', 'redis'], 'the services')
  for (const name of IMAGE_SERVICES) {
    const service = services[name]
    t.equal(service.build, '.', `${name} is built from the Dockerfile`)
    t.equal(service.image, services.migrate.image, `${name} runs the one image`)
    t.equal(service.pull_policy, 'build', `${name}: the image is built, never pulled from a registry under that name`)
    t.notOk(service.volumes, `${name} mounts no source`)
    t.equal(service.command?.[0], 'node', `${name} runs node itself`)
  }
  for (const name of IMAGE_SERVICES.filter((name) => name !== 'migrate')) {
    const grace = /^(\d+)s$/.exec(services[name].stop_grace_period ?? '')
    t.ok(grace !== null && Number(grace[1]) * 1000 > CLOSE_GRACE_MS, `${name}: docker waits longer than the drain (${CLOSE_GRACE_MS} ms) before SIGKILL`)
  }
  t.same(services['auth-core'].command, ['node', 'dist/auth-core/server.js'])
  t.same(services.migrate.command, ['node', 'dist/gateway/cli/migrate.js'])
  for (const name of ['gateway-a', 'gateway-b']) t.same(services[name].command, ['node', 'dist/gateway/server.js'])

  for (const [name, service] of Object.entries(services)) {
    if (name === 'migrate') {
      t.ok(service.restart === undefined || service.restart === 'no', 'migrate runs once: never restarted')
      continue
    }
    t.equal(service.restart, 'unless-stopped', `${name} is restarted unless stopped`)
  }
  t.same(services.redis.healthcheck?.test, ['CMD', 'redis-cli', 'ping'], 'redis answers ping')
  t.match(services.postgres.healthcheck?.test.join(' '), /pg_isready/)
  t.same(services['auth-core'].healthcheck?.test, ['CMD', 'node', 'dist/gateway/cli/healthcheck.js', 'auth-core'], 'auth-core: GET /health on AUTH_CORE_PORT')
  for (const name of ['gateway-a', 'gateway-b']) t.same(services[name].healthcheck?.test, ['CMD', 'node', 'dist/gateway/cli/healthcheck.js', 'gateway'], `${name}: GET /health on PORT`)

  t.same(dependencies(services.migrate), { postgres: 'service_healthy' }, 'migrate waits for Postgres')
  t.same(dependencies(services['auth-core']), { migrate: 'service_completed_successfully', redis: 'service_healthy' }, 'auth-core starts once the migrations are done')
  for (const name of ['gateway-a', 'gateway-b']) {
    t.same(dependencies(services[name]), { migrate: 'service_completed_successfully', 'auth-core': 'service_healthy', redis: 'service_healthy' }, `${name} waits for auth-core and Redis to be healthy`)
  }
  for (const [name, service] of Object.entries(services)) {
    for (const [dependency, condition] of Object.entries(dependencies(service))) {
      t.ok(services[dependency], `${name} depends on a service that exists (${dependency})`)
      if (condition === 'service_healthy') t.ok(services[dependency].healthcheck, `${name} waits for ${dependency}'s healthcheck, which it has`)
    }
  }
})

t.test('docker-compose.yml: each service holds the secrets it reads, and only those', async (t) => {
  const expected: Record<string, string[]> = {
    // `npm run migrate` loads both services' configuration; it sends no mail.
    migrate: ['BETTER_AUTH_SECRET', 'JWT_SECRET'],
    // JWT_SECRET: auth-core verifies client tokens too (validate-session).
    'auth-core': ['BETTER_AUTH_SECRET', 'JWT_SECRET', 'SMTP_URL'],
    'gateway-a': ['JWT_SECRET'],
    'gateway-b': ['JWT_SECRET']
  }
  const load = (name: string, env: Env): object => {
    const withDir = { ...env, DATA_DIR: tempDir(t) }
    if (name === 'migrate') return loadConfig(withDir)
    return name === 'auth-core' ? loadConfig(withDir, 'auth-core') : loadConfig(withDir, 'gateway')
  }
  for (const name of IMAGE_SERVICES) {
    const env = substitute(services[name].environment)
    t.same(SECRETS.filter((secret) => env[secret] !== undefined), expected[name], `${name} holds ${expected[name].join(', ')}`)
    t.equal(env.NODE_ENV, 'production', `${name} runs in production, where every secret is required`)
    t.doesNotThrow(() => load(name, env), `${name}'s environment passes its configuration check`)
    for (const secret of ['BETTER_AUTH_SECRET', 'JWT_SECRET'].filter((name) => env[name] !== undefined)) {
      const without = { ...env, [secret]: undefined }
      t.throws(() => load(name, without), { name: 'ConfigError', variable: secret }, `${name} needs ${secret}: it refuses to start without it`)
    }
  }
  const gateway = loadConfig({ ...substitute(services['gateway-a'].environment), DATA_DIR: tempDir(t) }, 'gateway')
  t.notOk('betterAuthSecret' in gateway || 'smtpUrl' in gateway, 'the gateway\'s configuration has no place for BETTER_AUTH_SECRET or SMTP_URL')
})

t.test('every file the Dockerfile and compose run is one npm run build emits', async (t) => {
  const commands: Array<[string, string[]]> = [
    ['Dockerfile CMD', execForm(last('CMD')?.args ?? '[]')],
    ['Dockerfile HEALTHCHECK', healthcheckCommand()]
  ]
  for (const name of IMAGE_SERVICES) {
    const service = services[name]
    if (service.command !== undefined) commands.push([`${name} command`, service.command])
    if (service.healthcheck !== undefined) commands.push([`${name} healthcheck`, service.healthcheck.test.slice(1)])
  }
  const { compilerOptions } = JSON.parse(read('tsconfig.build.json')) as { compilerOptions: { outDir: string, rootDir: string } }
  t.same([compilerOptions.outDir, compilerOptions.rootDir], ['dist', '.'], 'dist/X.js is compiled from X.ts')
  for (const [where, command] of commands) {
    const scripts = command.filter((arg) => /^dist\/.+\.js$/.test(arg))
    t.equal(scripts.length, 1, `${where} runs one compiled file`)
    for (const script of scripts) {
      const source = script.replace(/^dist\//, '').replace(/\.js$/, '.ts')
      t.ok(existsSync(join(ROOT, source)) && /^(gateway|auth-core|shared)\//.test(source), `${where}: ${script} is compiled from ${source}`)
    }
  }
})

/** A server answering `GET /health` with `status`, closed when the test ends. */
async function healthServer (t: Teardown, status: number): Promise<number> {
  const server = createServer((request, reply) => {
    reply.statusCode = request.url === '/health' ? status : 404
    reply.end('{"status":"ok"}')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => { resolve() })))
  return (server.address() as AddressInfo).port
}

t.test('the healthcheck script probes GET /health of the service the container runs', async (t) => {
  const gatewayEnv = { NODE_ENV: 'production', JWT_SECRET: USER_ENV.JWT_SECRET as string, DATA_DIR: tempDir(t), HOST: '0.0.0.0' }
  const authCoreEnv = { ...gatewayEnv, BETTER_AUTH_SECRET: USER_ENV.BETTER_AUTH_SECRET as string, AUTH_CORE_HOST: '0.0.0.0' }
  const [healthy, unwell, closed] = [await healthServer(t, 200), await healthServer(t, 503), await freePort()]
  const check = async (args: string[], env: Record<string, string>): Promise<{ code: number | null, output: string }> => {
    const result = await runScript(HEALTHCHECK_SCRIPT, args, env)
    return { code: result.code, output: result.stdout + result.stderr }
  }

  let result = await check([], { ...gatewayEnv, PORT: String(healthy) })
  t.equal(result.code, 0, `a gateway answering 200: healthy (${result.output.trim()})`)
  result = await check(['gateway'], { ...gatewayEnv, PORT: String(unwell) })
  t.equal(result.code, 1, 'a gateway answering 503: unhealthy')
  t.match(result.output, /answered 503/)
  result = await check([], { ...authCoreEnv, PORT: String(unwell), AUTH_CORE_PORT: String(healthy) })
  t.equal(result.code, 1, 'without an argument, a gateway port that answers decides: the other service is not asked')
  result = await check([], { ...authCoreEnv, PORT: String(closed), AUTH_CORE_PORT: String(healthy) })
  t.equal(result.code, 0, `without an argument, auth-core's container (nothing on PORT): auth-core's /health (${result.output.trim()})`)
  result = await check(['auth-core'], { ...authCoreEnv, AUTH_CORE_PORT: String(closed) })
  t.equal(result.code, 1, 'auth-core not listening: unhealthy')
  t.match(result.output, new RegExp(`nothing listens on 127\\.0\\.0\\.1:${closed}`))
  result = await check([], { ...gatewayEnv, PORT: String(closed) })
  t.equal(result.code, 1, 'a gateway\'s container with the gateway down: unhealthy, and auth-core is not configured there')
  t.match(result.output, /BETTER_AUTH_SECRET/)
  result = await check(['nginx'], gatewayEnv)
  t.equal(result.code, 2, 'an unknown service is a usage error')
})
