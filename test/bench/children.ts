import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import type { BenchMessage, BenchReply, ServiceStats } from './service-messages.ts'

/* The bench's own processes: started from this directory's scripts, asked for figures over IPC. */

const HERE = new URL('.', import.meta.url).pathname

export interface Child {
  url: string
  process: ChildProcess
}

export interface ScriptOptions {
  /** Node flags before the script (`--cpu-prof`, `--max-semi-space-size=…`). */
  execArgv?: string[]
  /** Runs the script below the others' CPU priority (see hashing.ts). */
  nice?: number
  ipc?: boolean
  /** Runs this JavaScript file with plain node instead of the script through tsx (bundle.ts). */
  bundle?: string
}

/** Node running one of the bench's scripts. */
export function nodeScript (script: string, argv: string[], env: Record<string, string>, options: ScriptOptions = {}): ChildProcess {
  const args = [...(options.execArgv ?? []), ...(options.bundle === undefined ? ['--import=tsx', join(HERE, script)] : [options.bundle]), ...argv]
  return spawn(options.nice === undefined ? process.execPath : 'nice', options.nice === undefined ? args : ['-n', String(options.nice), process.execPath, ...args], {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: options.ipc === true ? ['ignore', 'pipe', 'inherit', 'ipc'] : ['ignore', 'pipe', 'inherit']
  })
}

/** A bench service: answers messages (service-messages.ts) and prints its URL once listening. */
export async function startChild (script: string, argv: string[], env: Record<string, string>, options: Omit<ScriptOptions, 'ipc'> = {}): Promise<Child> {
  const child = nodeScript(script, argv, env, { ...options, ipc: true })
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

export function stop (child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => {
    const timer = setTimeout(() => { child.kill('SIGKILL') }, 5000)
    child.once('exit', () => { clearTimeout(timer); resolve() })
    child.kill('SIGTERM')
  })
}

type Request = BenchMessage extends infer M ? M extends BenchMessage ? Omit<M, 'id'> : never : never
let nextId = 0

/** Sends one message to a bench service and waits for its reply (matched by id). */
export async function ask<T extends BenchReply['type']> (child: ChildProcess, message: Request, type: T): Promise<Extract<BenchReply, { type: T }>> {
  const id = ++nextId
  return new Promise((resolve, reject) => {
    const onMessage = (reply: BenchReply): void => {
      if (reply.id !== id) return
      child.off('message', onMessage)
      if (reply.type === type) resolve(reply as Extract<BenchReply, { type: T }>)
      else reject(new Error(reply.type === 'error' ? reply.message : `expected ${type}, got ${reply.type}`))
    }
    child.on('message', onMessage)
    child.send({ ...message, id })
  })
}

/** CPU time, memory and (gateway) cache sizes of a service; `gc` first runs a full collection where `--expose-gc` allows. */
export async function stats (child: ChildProcess, gc = false): Promise<ServiceStats> {
  return ask(child, { type: 'stats', gc }, 'stats')
}
