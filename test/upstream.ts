import { createServer } from 'node:http'
import type { IncomingHttpHeaders, Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { startTestStack } from './helper.ts'
import { freePort } from './ports.ts'
import type { Teardown } from './helper.ts'
import type { Stack } from '../gateway/cli/stack.ts'
import type { Env } from '../shared/config.ts'

export interface Recorded {
  method: string
  url: string
  headers: IncomingHttpHeaders
  rawHeaders: string[]
  body: string
}

export interface RecordingUpstream {
  url: string
  requests: Recorded[]
  server: Server
  /** From now on, answers wait for `release()`: a slow or hung upstream, without a timer. */
  hold: () => void
  /** Sends every held answer, and answers at once again. */
  release: () => void
  /** The next request the upstream receives (body read, answer not yet sent). */
  nextRequest: () => Promise<Recorded>
}

/** A loopback HTTP server that records every request it receives and answers a small JSON body. */
export async function recordingUpstream (t: Teardown, answer: (req: Recorded) => { status?: number, body?: unknown, headers?: Record<string, string> } = () => ({})): Promise<RecordingUpstream> {
  let held: Array<() => void> | null = null
  const waiting: Array<(recorded: Recorded) => void> = []
  const upstream: RecordingUpstream = {
    url: '',
    requests: [],
    server: createServer(),
    hold: () => { held ??= [] },
    release: () => {
      const sends = held ?? []
      held = null
      for (const send of sends) send()
    },
    nextRequest: () => new Promise((resolve) => { waiting.push(resolve) })
  }
  upstream.server.on('request', (req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      const recorded: Recorded = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, body: Buffer.concat(chunks).toString('utf8') }
      upstream.requests.push(recorded)
      const { status = 200, body = { answer: 'ok', path: recorded.url }, headers = {} } = answer(recorded)
      const send = (): void => {
        res.writeHead(status, { 'content-type': 'application/json', ...headers })
        res.end(JSON.stringify(body))
      }
      if (held !== null) held.push(send)
      else send()
      for (const resolve of waiting.splice(0)) resolve(recorded)
    })
  })
  await new Promise<void>((resolve) => upstream.server.listen(0, '127.0.0.1', resolve))
  upstream.url = `http://127.0.0.1:${(upstream.server.address() as AddressInfo).port}`
  t.teardown(() => new Promise<void>((resolve) => {
    upstream.server.closeAllConnections()
    upstream.server.close(() => { resolve() })
  }))
  return upstream
}

/** The URL of a loopback port nothing listens on (it was free a moment ago): a service that is down. */
export async function closedPortUrl (): Promise<string> {
  return `http://127.0.0.1:${await freePort()}`
}

export interface UpstreamStack {
  stack: Stack
  rag: RecordingUpstream
  app: RecordingUpstream
}

/** The whole stack with a recording RAG and app upstream. */
export async function stackWithUpstreams (t: Teardown, env: Env = {}): Promise<UpstreamStack> {
  const rag = await recordingUpstream(t)
  const app = await recordingUpstream(t)
  const stack = await startTestStack(t, { RAG_UPSTREAM_URL: rag.url, APP_UPSTREAM_URL: app.url, ...env })
  return { stack, rag, app }
}

/** The identity token the upstream received with its last request. */
export function lastBearer (upstream: RecordingUpstream): string {
  const match = /^Bearer (\S+)$/.exec(String(upstream.requests.at(-1)?.headers.authorization))
  if (match === null) throw new Error('the upstream received no bearer token')
  return match[1]
}

async function statusOf (response: Promise<Response>): Promise<number> {
  const answer = await response
  await answer.arrayBuffer()
  return answer.status
}

/** A signed-in RAG question (`POST /api/v1/query`); the status it got. */
export async function askRag (stack: Pick<Stack, 'url'>, cookie: string): Promise<number> {
  return statusOf(fetch(`${stack.url}/api/v1/query`, { method: 'POST', headers: { cookie, 'content-type': 'application/json' }, body: '{"q":"x"}' }))
}

/** A signed-in app-upstream call (`GET /api/private`); the status it got. */
export async function askApp (stack: Pick<Stack, 'url'>, cookie: string): Promise<number> {
  return statusOf(fetch(`${stack.url}/api/private`, { headers: { cookie } }))
}
