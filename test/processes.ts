import { execFile, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { chownSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { Teardown } from './helper.ts'
import { freePort } from './ports.ts'
import { until } from './poll.ts'

/*
 * The services as their own processes (`auth-core/server.ts`, `gateway/server.ts`) and a Postgres
 * cluster of the test's own, for tests where "the process exited" or "the database went away" must be
 * observed, not inferred.
 */

const run = promisify(execFile)
/** In the cluster's URL so a test can prove no log line ever carries it (the cluster trusts every local login). */
export const DB_PASSWORD = 'pg-password-never-logged'

export function postgresBin (): string | null {
  const versions = existsSync('/usr/lib/postgresql') ? readdirSync('/usr/lib/postgresql').filter((name) => /^\d+$/.test(name)).sort((a, b) => Number(b) - Number(a)) : []
  for (const version of versions) {
    const dir = `/usr/lib/postgresql/${version}/bin`
    if (existsSync(join(dir, 'initdb'))) return dir
  }
  for (const dir of (process.env.PATH ?? '').split(':')) if (dir !== '' && existsSync(join(dir, 'initdb'))) return dir
  return null
}



function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  // A zombie nobody reaped yet is gone for Postgres' purposes.
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return true
  }
}

export interface Cluster {
  url: string
  start: () => Promise<void>
  stop: () => Promise<void>
  /** `kill -9` of the postmaster; resolves once it and its backends are gone. */
  kill: () => Promise<void>
}

/** A throw-away cluster: `initdb` as the `postgres` OS user when running as root (initdb refuses root). */
export async function startCluster (t: Teardown, bin: string, password = DB_PASSWORD): Promise<Cluster> {
  const root = process.getuid?.() === 0
  const base = mkdtempSync('/tmp/pgfaults-')
  if (root) {
    const { stdout } = await run('id', ['-u', 'postgres'])
    const { stdout: gid } = await run('id', ['-g', 'postgres'])
    chownSync(base, Number(stdout.trim()), Number(gid.trim()))
  }
  const asOwner = async (command: string, args: string[]): Promise<void> => {
    const [file, argv] = root ? ['runuser', ['-u', 'postgres', '--', join(bin, command), ...args]] : [join(bin, command), args]
    await run(file, argv, { timeout: 30_000 })
  }
  const dataDir = join(base, 'data')
  const port = await freePort()
  await asOwner('initdb', ['-D', dataDir, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8'])
  const ctl = (args: string[]): Promise<void> => asOwner('pg_ctl', ['-D', dataDir, ...args])
  const start = async (): Promise<void> => {
    // `-l`: without a log file the postmaster would hold pg_ctl's stdout open and execFile never return.
    await ctl(['-o', `-p ${port} -k ${base} -c listen_addresses=127.0.0.1 -c fsync=on`, '-l', join(base, 'postgres.log'), '-w', '-t', '30', 'start'])
  }
  const postmasterPid = (): number => Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0])
  const cluster: Cluster = {
    url: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`,
    start,
    stop: () => ctl(['-m', 'fast', '-w', 'stop']),
    async kill () {
      const pid = postmasterPid()
      const { stdout } = await run('ps', ['-o', 'pid=', '--ppid', String(pid)])
      const backends = stdout.split('\n').map((line) => Number(line.trim())).filter((n) => n > 0)
      process.kill(pid, 'SIGKILL')
      // Its backends notice the postmaster's death and exit; a new postmaster refuses to start while they hold shared memory.
      await until('the killed cluster to be gone', 10_000, async () => [pid, ...backends].some(alive) ? undefined : true, 50)
    }
  }
  t.teardown(async () => {
    try {
      await ctl(['-m', 'immediate', '-w', 'stop'])
    } catch {}
    rmSync(base, { recursive: true, force: true })
  })
  await start()
  return cluster
}

export interface Service {
  name: string
  child: ChildProcess
  url: string
  exit: { code: number | null, signal: NodeJS.Signals | null } | null
  output: () => string
}

export function spawnService (t: Teardown, name: string, script: string, env: Record<string, string>, url: string): Service {
  const child = spawn(process.execPath, ['--import=tsx', script], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '', ...env } })
  let output = ''
  const keep = (chunk: string): void => { output = (output + chunk).slice(-2_000_000) }
  child.stdout?.setEncoding('utf8').on('data', keep)
  child.stderr?.setEncoding('utf8').on('data', keep)
  const service: Service = { name, child, url, exit: null, output: () => output }
  child.on('exit', (code, signal) => { service.exit = { code, signal } })
  t.teardown(async () => {
    if (service.exit !== null) return
    const exited = new Promise((resolve) => { child.once('exit', resolve) })
    child.kill('SIGTERM')
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 12_000))])
    if (service.exit === null) child.kill('SIGKILL')
  })
  return service
}

export async function runScript (script: string, env: Record<string, string>): Promise<void> {
  await run(process.execPath, ['--import=tsx', script], { env: { PATH: process.env.PATH ?? '', ...env }, timeout: 60_000 })
}

export interface Answer {
  status: number
  /** The JSON body's `error`, `null` when the body is JSON without one, `'<empty>'`/`'<not json>'` otherwise. */
  error: string | null
  json: unknown
  ms: number
}

/** One request that never throws: a network failure or a 10 s hang is status 0. */
export async function call (f: typeof fetch, url: string, init: RequestInit = {}): Promise<Answer> {
  const started = Date.now()
  try {
    const response = await f(url, { ...init, signal: AbortSignal.timeout(10_000) })
    const text = await response.text()
    let json: unknown = null
    let error: string | null = text === '' ? '<empty>' : '<not json>'
    if (text !== '' && (response.headers.get('content-type') ?? '').includes('json')) {
      try {
        json = JSON.parse(text)
        const code = (json as { error?: unknown } | null)?.error
        error = typeof code === 'string' ? code : null
      } catch {}
    }
    return { status: response.status, error, json, ms: Date.now() - started }
  } catch (err) {
    return { status: 0, error: (err as Error).name, json: null, ms: Date.now() - started }
  }
}

export const describe = (answer: Answer): string => `${answer.status} ${answer.error ?? ''} in ${answer.ms} ms`

export interface RedisServer {
  url: string
  port: number
  /** `SIGKILL`; resolves once the server is gone. */
  kill: () => Promise<void>
  /** Starts it again on the same port (empty: it keeps nothing on disk). */
  start: () => Promise<void>
  pause: () => void
  resume: () => void
}

/**
 * A `redis-server` of the test's own (never the machine's), without persistence, on `port` or a free
 * one; killed in teardown.
 */
export async function startRedisServer (t: Teardown, database = 0, port?: number): Promise<RedisServer> {
  port ??= await freePort()
  let child: ChildProcess | null = null
  const kill = async (): Promise<void> => {
    const running = child
    if (running === null || running.exitCode !== null || running.signalCode !== null) return
    const exited = new Promise((resolve) => { running.once('exit', resolve) })
    running.kill('SIGKILL')
    await exited
  }
  // A test killed by tap's timeout runs no teardown: the server must not outlive it.
  const orphaned = (): void => { child?.kill('SIGKILL') }
  process.once('exit', orphaned)
  t.teardown(async () => {
    process.removeListener('exit', orphaned)
    await kill()
  })
  const start = async (): Promise<void> => {
    const started = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] })
    child = started
    let output = ''
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error(`redis-server on ${port} not ready within 20 s:\n${output}`)) }, 20_000)
      started.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
        output += chunk
        if (output.includes('Ready to accept connections')) {
          clearTimeout(timer)
          resolve()
        }
      })
      started.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`redis-server on ${port} exited with ${code}:\n${output}`))
      })
    })
  }
  await start()
  return {
    url: `redis://127.0.0.1:${port}/${database}`,
    port,
    kill,
    start,
    pause: () => { child?.kill('SIGSTOP') },
    resume: () => { child?.kill('SIGCONT') }
  }
}
