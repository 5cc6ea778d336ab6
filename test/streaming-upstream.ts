import { once } from 'node:events'
import { createServer, request as httpRequest } from 'node:http'
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http'
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

export interface LeavingClient {
  /** The answer's head, with its body unread. */
  response: Promise<IncomingMessage>
  /** The next chunk of the body. */
  next: () => Promise<string>
  /** Closes the connection at once (a tab closed); `performance.now()` when it did. */
  leave: () => number
}

/**
 * A client on a connection of its own that can leave at a known instant: `node:http` with no
 * agent, so closing it is one synchronous `destroy` (fetch's abort goes through more machinery
 * first, and on a busy machine that alone takes tens of milliseconds).
 */
export function leavingClient (url: string, options: { method?: string, path: string, headers?: Record<string, string>, body?: string }): LeavingClient {
  const request = httpRequest(`${url}${options.path}`, { method: options.method ?? 'GET', headers: options.headers, agent: false })
  request.on('error', () => {})
  request.end(options.body)
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    request.once('response', resolve)
    request.once('error', reject)
  })
  // Leaving before the answer rejects it ("socket hang up"): expected, so never unhandled.
  response.catch(() => {})
  let chunks: AsyncIterator<Buffer> | undefined
  return {
    response,
    next: async () => {
      chunks ??= (await response)[Symbol.asyncIterator]() as AsyncIterator<Buffer>
      const { done, value } = await chunks.next()
      return done === true ? '' : value.toString('utf8')
    },
    leave: () => {
      request.destroy()
      return performance.now()
    }
  }
}

/**
 * Measures how late this process's event loop runs while `promise` settles: the gateway, the
 * upstream and the client share it, and none can react faster than it turns. Resolves with the
 * promise's value and the longest gap between two ticks of a 1 ms interval, less that 1 ms.
 */
export async function withLoopLag<T> (promise: Promise<T>): Promise<{ value: T, lagMs: number }> {
  let last = performance.now()
  let lagMs = 0
  const probe = setInterval(() => {
    const now = performance.now()
    lagMs = Math.max(lagMs, now - last - 1)
    last = now
  }, 1)
  try {
    const value = await promise
    lagMs = Math.max(lagMs, performance.now() - last - 1)
    return { value, lagMs }
  } finally {
    clearInterval(probe)
  }
}
