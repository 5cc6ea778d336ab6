import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Teardown } from './helper.ts'
import { freePort } from './ports.ts'
import { until } from './poll.ts'

/*
 * HAProxy (Debian's `haproxy`) in front of gateway replicas, configured as an operator would: round
 * robin, health checks on `/ready`, `X-Forwarded-For` added, a failed connection or an answerless
 * closed connection retried on the other replica. It connects to the replicas from its own loopback
 * address (`source`), so a test can tell the proxy's address from the client's.
 */

export const HAPROXY = '/usr/sbin/haproxy'

export function haproxyInstalled (): boolean {
  try {
    execFileSync(HAPROXY, ['-v'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

export interface Backend {
  name: string
  /** `host:port` of a replica. */
  address: string
}

export interface HaproxyOptions {
  /** The address HAProxy connects to the replicas from (the gateways' `TRUST_PROXY`). @default '127.0.0.1' */
  source?: string
  /** Milliseconds between health checks. @default 200 */
  checkIntervalMs?: number
}

export interface Haproxy {
  url: string
  /** The runtime API (`show servers state`, `disable server`…), one command per call. */
  command: (line: string) => Promise<string>
  /** Resolves once HAProxy's health checks see the named replicas up (or down). */
  waitFor: (state: 'UP' | 'DOWN', names: readonly string[], deadlineMs?: number) => Promise<void>
  output: () => string
}

function config (port: number, socket: string, backends: readonly Backend[], options: Required<HaproxyOptions>): string {
  return `global
  maxconn 4096
  stats socket ${socket} mode 600 level admin

defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  timeout http-keep-alive 10s
  # A replica that refuses the connection or closes it without answering (stopping, killed) costs a retry, not an error.
  retries 3
  option redispatch 1
  retry-on conn-failure empty-response
  option http-buffer-request

frontend gateways
  bind 127.0.0.1:${port}
  option forwardfor
  default_backend replicas

backend replicas
  balance roundrobin
  option httpchk GET /ready
  http-check expect status 200
  source ${options.source}
  default-server inter ${options.checkIntervalMs} fall 2 rise 1
${backends.map((backend) => `  server ${backend.name} ${backend.address} check`).join('\n')}
`
}

/** Starts HAProxy in the foreground; the test's teardown stops it. */
export async function startHaproxy (t: Teardown, backends: readonly Backend[], options: HaproxyOptions = {}): Promise<Haproxy> {
  const settings: Required<HaproxyOptions> = { source: options.source ?? '127.0.0.1', checkIntervalMs: options.checkIntervalMs ?? 200 }
  const dir = mkdtempSync('/tmp/haproxy-')
  const port = await freePort()
  const socket = join(dir, 'admin.sock')
  const file = join(dir, 'haproxy.cfg')
  writeFileSync(file, config(port, socket, backends, settings))
  const child = spawn(HAPROXY, ['-db', '-f', file], { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  const keep = (chunk: string): void => { output = (output + chunk).slice(-200_000) }
  child.stdout.setEncoding('utf8').on('data', keep)
  child.stderr.setEncoding('utf8').on('data', keep)
  let exited = false
  child.on('exit', () => { exited = true })
  t.teardown(async () => {
    if (!exited) {
      const gone = new Promise((resolve) => { child.once('exit', resolve) })
      child.kill('SIGTERM')
      await gone
    }
    rmSync(dir, { recursive: true, force: true })
  })

  const command = async (line: string): Promise<string> => {
    const { connect } = await import('node:net')
    return new Promise((resolve, reject) => {
      const conn = connect(socket)
      let answer = ''
      conn.setEncoding('utf8')
      conn.on('data', (chunk: string) => { answer += chunk })
      conn.on('end', () => { resolve(answer) })
      conn.on('error', reject)
      conn.end(`${line}\n`)
    })
  }
  const states = async (): Promise<Map<string, 'UP' | 'DOWN'>> => {
    // `show stat` as CSV: pxname,svname,...,status (column 18).
    const lines = (await command('show stat')).split('\n').filter((line) => line.startsWith('replicas,'))
    return new Map(lines.map((line) => {
      const columns = line.split(',')
      return [columns[1], columns[17].startsWith('UP') ? 'UP' : 'DOWN'] as const
    }))
  }
  const haproxy: Haproxy = {
    url: `http://127.0.0.1:${port}`,
    command,
    async waitFor (state, names, deadlineMs = 20_000) {
      await until(`HAProxy to see ${names.join(', ')} ${state}`, deadlineMs, async () => {
        if (exited) throw new Error(`haproxy exited: ${output}`)
        const seen = await states().catch(() => new Map<string, string>())
        return names.every((name) => seen.get(name) === state) ? true : undefined
      }, 50)
    },
    output: () => output
  }
  await until('HAProxy to listen', 10_000, async () => {
    if (exited) throw new Error(`haproxy exited: ${output}`)
    return (await command('show info').then(() => true, () => undefined))
  }, 50)
  return haproxy
}
