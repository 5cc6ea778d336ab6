import t from 'tap'
import { execFile } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { parse } from 'yaml'
import { loadConfig } from '../../shared/config.ts'
import type { Env } from '../../shared/config.ts'
import { tempDir } from '../helper.ts'
import { HAPROXY, haproxyInstalled } from '../haproxy.ts'

/*
 * No Docker engine here: what can be checked of docker-compose.yml without one is checked. It parses;
 * two gateway replicas sit behind HAProxy and share Redis; each service's environment (with the
 * variables a user sets) passes the services' own configuration check; HAProxy accepts its config.
 */

const run = promisify(execFile)

interface Service {
  image?: string
  command?: string[]
  environment?: Record<string, string>
  ports?: string[]
  expose?: string[]
  depends_on?: string[] | Record<string, unknown>
  configs?: Array<{ source: string, target: string }>
}
interface Compose {
  services: Record<string, Service>
  configs: Record<string, { content: string }>
}

const compose = parse(readFileSync('docker-compose.yml', 'utf8'), { merge: true }) as Compose
const USER_ENV: Env = { BETTER_AUTH_SECRET: 'b'.repeat(40), JWT_SECRET: 'j'.repeat(40), SMTP_URL: 'smtp://mailer:secret@mail.example.com:587' }

/** Compose's `${NAME}`, `${NAME:-default}` and `${NAME:?message}` with what a user sets. */
function substitute (environment: Record<string, string>): Env {
  const result: Env = {}
  for (const [name, value] of Object.entries(environment)) {
    result[name] = String(value).replace(/\$\{(\w+)(?::([-?])([^}]*))?\}/g, (_all, variable: string, kind: string | undefined, rest: string | undefined) => {
      const set = USER_ENV[variable]
      if (set !== undefined && set !== '') return set
      if (kind === '?') throw new Error(`${variable} is required: ${rest ?? ''}`)
      return rest ?? ''
    })
  }
  return result
}

t.test('two gateway replicas behind HAProxy, sharing Redis', async (t) => {
  const { services } = compose
  const gateways = Object.keys(services).filter((name) => services[name].command?.includes('dist/gateway/server.js') === true)
  t.same(gateways, ['gateway-a', 'gateway-b'], 'two gateway replicas')
  for (const name of [...gateways, 'auth-core']) t.equal(services[name].command?.[0], 'node', `${name} runs the compiled output with node itself: SIGTERM reaches it`)
  t.same(services.migrate.command, ['node', 'dist/gateway/cli/migrate.js'], 'the migrate job runs the compiled migrations once (the image built them)')
  t.same(services['gateway-a'], services['gateway-b'], 'configured alike')
  t.notOk(services['gateway-a'].ports, 'the replicas publish no port: only the proxy does')
  t.same(services.proxy.ports, ['8000:8000'], 'the proxy publishes 8000')
  t.notOk(services['auth-core'].ports, 'auth-core publishes no port')
  const gatewayEnv = substitute(services['gateway-a'].environment ?? {})
  const authCoreEnv = substitute(services['auth-core'].environment ?? {})
  t.equal(gatewayEnv.REDIS_URL, 'redis://redis:6379', 'the gateways share Redis')
  t.equal(gatewayEnv.NODE_OPTIONS, '--max-semi-space-size=4 --max-old-space-size=256', 'the gateways start with the memory flags the soak measured')
  t.notOk(authCoreEnv.NODE_OPTIONS, 'auth-core keeps V8\'s defaults')
  t.equal(authCoreEnv.REDIS_URL, gatewayEnv.REDIS_URL, 'auth-core keeps its sessions in the same Redis')
  for (const name of ['JWT_SECRET', 'PUBLIC_URL', 'ALLOWED_ORIGINS', 'DATABASE_URL'] as const) t.equal(gatewayEnv[name], authCoreEnv[name], `${name} is the same for both services`)

  const gateway = loadConfig({ ...gatewayEnv, DATA_DIR: tempDir(t) }, 'gateway')
  t.not(gateway.trustProxy, false, 'the gateways believe the proxy\'s X-Forwarded-For')
  t.equal(gateway.redisUrl, 'redis://redis:6379')
  const authCore = loadConfig({ ...authCoreEnv, DATA_DIR: tempDir(t) }, 'auth-core')
  t.equal(authCore.authCoreHost, '0.0.0.0', 'auth-core listens inside its container')
  t.ok(authCore.production && authCore.smtpUrl !== undefined, 'auth-core runs in production with an SMTP server')
  t.notOk(gatewayEnv.SMTP_URL, 'the gateway is not given the mail server\'s password')
  t.throws(() => { substitute({ JWT_SECRET: '${UNSET_SECRET:?set it}' }) }, /UNSET_SECRET is required/, 'a required variable left unset stops compose')
})

t.test('HAProxy accepts its configuration, health-checks /ready and retries on the other replica', { skip: haproxyInstalled() ? false : 'haproxy is missing (apt-get install -y haproxy)' }, async (t) => {
  const { content } = compose.configs[compose.services.proxy.configs?.[0]?.source ?? '']
  t.match(content, /option httpchk GET \/ready/)
  t.match(content, /retry-on conn-failure empty-response/)
  for (const name of ['gateway-a', 'gateway-b']) t.match(content, new RegExp(`server ${name} ${name}:8000 check`), `${name} is a backend`)
  const file = join(tempDir(t), 'haproxy.cfg')
  writeFileSync(file, content)
  const { stdout } = await run(HAPROXY, ['-c', '-f', file])
  t.match(stdout, /Configuration file is valid/)
})
