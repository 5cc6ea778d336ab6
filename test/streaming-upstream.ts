import { once } from 'node:events'
import { createServer } from 'node:http'
import type { IncomingHttpHeaders, ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import type { Teardown } from './helper.ts'

/** One request at a streaming upstream, answered however the test says. */
export interface Exchange {
  method: string
  url: string
  headers: IncomingHttpHeaders
  body: string
  res: ServerResponse
  /** `performance.now()` when the request (body included) had arrived. */
  receivedAt: number
  /** Resolves with `performance.now()` once the gateway's connection for this request closed. */
  closed: Promise<number>
  /** Writes a chunk; resolves with `performance.now()` when written, after waiting for `drain` if the socket is full. */
  write: (chunk: string | Buffer) => Promise<number>
}

export interface StreamingUpstream {
  url: string
  /** Every request received, in order. */
  exchanges: Exchange[]
  /** The next request (or one already received and not yet taken). */
  nextExchange: () => Promise<Exchange>
  /** Connections the gateway holds open to this upstream right now. */
  openConnections: () => number
}

/**
 * A loopback upstream whose answers the test writes itself, chunk by chunk, through `res`: the
 * server-sent events, NDJSON lines and stalls of a chatbot, with timestamps of what it did.
 */
export async function streamingUpstream (t: Teardown): Promise<StreamingUpstream> {
  const sockets = new Set<Socket>()
  const untaken: Exchange[] = []
  const waiting: Array<(exchange: Exchange) => void> = []
  const exchanges: Exchange[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    const socket = req.socket
    const closed = new Promise<number>((resolve) => {
      if (socket.destroyed) resolve(performance.now())
      else socket.once('close', () => { resolve(performance.now()) })
    })
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      const exchange: Exchange = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        res,
        receivedAt: performance.now(),
        closed,
        write: async (chunk) => {
          if (!res.write(chunk)) await once(res, 'drain')
          return performance.now()
        }
      }
      exchanges.push(exchange)
      const taker = waiting.shift()
      if (taker === undefined) untaken.push(exchange)
      else taker(exchange)
    })
  })
  server.on('connection', (socket: Socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(async () => {
    for (const socket of sockets) socket.destroy()
    server.close()
    await once(server, 'close')
  })
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    exchanges,
    nextExchange: async () => untaken.shift() ?? new Promise((resolve) => { waiting.push(resolve) }),
    openConnections: () => sockets.size
  }
}

/** Starts an event stream answer: the headers a Python SSE endpoint (sse-starlette, FastAPI) sends. */
export function startEventStream (exchange: Exchange, headers: Record<string, string> = {}): void {
  exchange.res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', ...headers })
  exchange.res.flushHeaders()
}

/** One server-sent event. */
export function sseEvent (data: unknown, event?: string): string {
  return `${event === undefined ? '' : `event: ${event}\n`}data: ${JSON.stringify(data)}\n\n`
}

/** Rejects naming `what` if `promise` has not settled within `ms`: a guard that turns a hang into a failure. */
export async function within<T> (what: string, ms: number, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const guard = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => { reject(new Error(`${what}: not within ${ms} ms`)) }, ms)
  })
  try {
    return await Promise.race([promise, guard])
  } finally {
    clearTimeout(timer)
  }
}

/** Reads a fetch body's chunks as text, one `read()` at a time. */
export function textReader (response: Response): { next: () => Promise<string | null>, received: () => string } {
  if (response.body === null) throw new Error('the answer has no body')
  const reader = response.body.getReader()
  const decoder = new TextDecoder()
  let text = ''
  return {
    next: async () => {
      const { done, value } = await reader.read()
      if (done) return null
      const chunk = decoder.decode(value, { stream: true })
      text += chunk
      return chunk
    },
    received: () => text
  }
}
