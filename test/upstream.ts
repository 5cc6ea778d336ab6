import { createServer } from 'node:http'
import type { IncomingHttpHeaders, Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Teardown } from './helper.ts'

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
  /** Delay before answering, in ms (to test timeouts). */
  delayMs: number
}

/** A loopback HTTP server that records every request it receives and answers a small JSON body. */
export async function recordingUpstream (t: Teardown, answer: (req: Recorded) => { status?: number, body?: unknown, headers?: Record<string, string> } = () => ({})): Promise<RecordingUpstream> {
  const upstream: RecordingUpstream = { url: '', requests: [], server: createServer(), delayMs: 0 }
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
      if (upstream.delayMs > 0) setTimeout(send, upstream.delayMs)
      else send()
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
