import { Readable } from 'node:stream'
import { util } from 'undici'
import type { Dispatcher, Pool } from 'undici'
import type { UpstreamClient, UpstreamLimits } from './upstream-client.ts'

/** The upstream's deadline for a call (`UPSTREAM_TIMEOUT`) has passed. */
export class UpstreamDeadlineError extends Error {
  readonly code = 'UPSTREAM_DEADLINE'
  constructor (timeoutMs: number) {
    super(`no complete answer within ${timeoutMs} ms`)
    this.name = 'UpstreamDeadlineError'
  }
}

/** The client went away: its upstream call is abandoned. */
export class ClientClosedError extends Error {
  readonly code = 'CLIENT_CLOSED'
  constructor () {
    super('the client closed the connection before the answer was sent')
    this.name = 'ClientClosedError'
  }
}

type ResponseHeaders = Record<string, string | string[] | undefined>

const NO_HEADERS: ResponseHeaders = Object.freeze({})
const EMPTY_BODY = Buffer.alloc(0)

/** What a call needs to know of the client's connection (a `net.Socket`; `inject`'s stand-in has neither). */
export interface CallerConnection {
  destroyed?: boolean
  writableEnded?: boolean
}

/** Whether an answer can no longer be sent on the connection: closed, or half-closed by the client (Node then ends it). */
export function isGone (connection: CallerConnection): boolean {
  return connection.destroyed === true || connection.writableEnded === true
}

/** An upstream's answer: its body whole (small, with a known length) or as it arrives. */
export interface UpstreamAnswer {
  statusCode: number
  headers: ResponseHeaders
  body: Buffer | UpstreamBody
}

/** Media types that are streams by nature, whatever their length: every event is passed on as it comes. */
export const STREAMED_TYPES: ReadonlySet<string> = new Set(['text/event-stream', 'application/x-ndjson'])

/** The media type of a `Content-Type`, lower-cased, without parameters. */
export function mediaType (contentType: string | string[] | undefined): string {
  const value = Array.isArray(contentType) ? contentType[0] : contentType
  if (value === undefined) return ''
  const semicolon = value.indexOf(';')
  return (semicolon === -1 ? value : value.slice(0, semicolon)).trim().toLowerCase()
}

// The same types as one test, run on every answer's `Content-Type` without slicing it.
const STREAMED_TYPE = new RegExp(`^\\s*(?:${[...STREAMED_TYPES].map((type) => type.replace(/[.+]/g, '\\$&')).join('|')})\\s*(?:;|$)`, 'i')

/** Whether an answer is streamed rather than buffered (see `UpstreamLimits.maxBufferedBytes`). */
function streams (method: string, statusCode: number, headers: ResponseHeaders, maxBufferedBytes: number): boolean {
  if (method === 'HEAD' || statusCode === 204 || statusCode === 304) return false
  const type = headers['content-type']
  if (type !== undefined && STREAMED_TYPE.test(Array.isArray(type) ? type[0] : type)) return true
  const length = headers['content-length']
  // No length: chunked or until the connection closes, so possibly endless.
  if (typeof length !== 'string') return true
  return Number(length) > maxBufferedBytes
}

const STREAM_HIGH_WATER_MARK = 64 * 1024

/**
 * A streamed answer's body. It asks the upstream for more only as it is read (backpressure), and
 * destroying it (the client left) aborts the upstream request.
 */
export class UpstreamBody extends Readable {
  readonly #call: UpstreamCall
  // The last two chunks passed on, to tell whether the stream stopped between two events.
  #last: Buffer | null = null
  #previous: Buffer | null = null
  /** What a failure of the upstream mid-stream does; by default the body fails (a truncated answer). */
  onUpstreamError: (err: Error) => void = (err) => { this.destroy(err) }

  constructor (call: UpstreamCall) {
    super({ highWaterMark: STREAM_HIGH_WATER_MARK })
    this.#call = call
  }

  /** @internal A chunk of the upstream's answer; false: wait for `_read` before sending more. */
  pass (chunk: Buffer): boolean {
    this.#previous = this.#last
    this.#last = chunk
    return this.push(chunk)
  }

  /** Whether what was passed on so far ends with a complete event (a blank line), or is nothing yet. */
  atEventBoundary (): boolean {
    if (this.#last === null) return true
    const tail = Buffer.concat(this.#previous === null ? [this.#last] : [this.#previous.subarray(-4), this.#last]).subarray(-4).toString('latin1')
    return tail.endsWith('\n\n') || tail.endsWith('\r\r') || tail.endsWith('\r\n\r\n')
  }

  override _read (): void {
    this.#call.resume()
  }

  override _destroy (err: Error | null, callback: (error?: Error | null) => void): void {
    this.#call.cancel(err ?? new ClientClosedError())
    callback(err)
  }
}

/**
 * One call to an upstream, as undici's dispatch handler: collects a small answer, or hands the
 * answer over as an `UpstreamBody` once its headers have arrived. The deadline covers everything
 * before that (and a buffered body); `cancel` drops the call wherever it is.
 */
export class UpstreamCall implements Dispatcher.DispatchHandler {
  readonly answer: Promise<UpstreamAnswer>
  /** Why the call was given up (deadline, client gone), if it was. */
  reason: Error | null = null
  readonly #client: UpstreamClient
  readonly #options: Dispatcher.DispatchOptions
  readonly #maxBufferedBytes: number
  #resolve!: (answer: UpstreamAnswer) => void
  #reject!: (err: Error) => void
  #settled = false
  #dispatched = false
  #finished = false
  #abort: ((err: Error) => void) | null = null
  #resume: (() => void) | null = null
  #statusCode = 0
  #headers: ResponseHeaders = NO_HEADERS
  // The buffered body: one chunk (the usual), or a list once a second comes.
  #chunk: Buffer | null = null
  #chunks: Buffer[] | null = null
  #body: UpstreamBody | null = null

  /** When the call fails unless answered (`performance.now()` milliseconds); the client keeps the one timer. */
  readonly deadline: number
  /** The client's connection, when the call is made for one. */
  readonly caller: CallerConnection | undefined
  /** @internal The client's list of calls by deadline. */
  previous: UpstreamCall | null = null
  /** @internal */
  next: UpstreamCall | null = null

  constructor (client: UpstreamClient, options: Dispatcher.DispatchOptions, limits: Readonly<UpstreamLimits>, caller: CallerConnection | undefined) {
    this.#client = client
    this.caller = caller
    this.#options = options
    this.#maxBufferedBytes = limits.maxBufferedBytes
    this.answer = new Promise((resolve, reject) => {
      this.#resolve = resolve
      this.#reject = reject
    })
    this.deadline = performance.now() + limits.timeoutMs
  }

  /**
   * Whether the answer can no longer reach the client: its connection closed, or the client
   * half-closed it (Node then ends the socket, before its close event comes).
   */
  abandoned (): boolean {
    return this.caller !== undefined && isGone(this.caller)
  }

  /** @internal Called by the client once a connection is free for this call. */
  dispatch (pool: Pool): void {
    this.#dispatched = true
    pool.dispatch(this.#options, this)
  }

  /**
   * Gives the call up: a waiting call never reaches the upstream, a call in flight is aborted (its
   * connection closed, so the upstream sees it at once), a streamed body ends. Idempotent.
   */
  cancel (reason: Error): void {
    if (this.#finished || this.reason !== null) return
    this.reason = reason
    this.#client.untrack(this)
    if (!this.#dispatched) {
      this.#client.withdraw(this)
      this.#finished = true
    } else if (this.#abort !== null) {
      // undici reports it through onError, which frees the connection.
      this.#abort(reason)
    }
    // Dispatched but not yet on a connection: onConnect aborts it.
    this.#fail(reason)
  }

  /** @internal The body is read again: let the upstream send more. */
  resume (): void {
    this.#resume?.()
  }

  onConnect (abort: (err?: Error) => void): void {
    if (this.reason !== null) {
      abort(this.reason)
      return
    }
    this.#abort = abort
  }

  onHeaders (statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    // Informational (1xx) answers come before the final one.
    if (statusCode < 200) return true
    this.#statusCode = statusCode
    this.#headers = util.parseHeaders(rawHeaders)
    if (streams(this.#options.method, statusCode, this.#headers, this.#maxBufferedBytes)) {
      // The answer has started: from here on only the idle timeout (undici's bodyTimeout) applies.
      this.#client.untrack(this)
      this.#resume = resume
      this.#body = new UpstreamBody(this)
      this.#settle({ statusCode, headers: this.#headers, body: this.#body })
    }
    return true
  }

  onData (chunk: Buffer): boolean {
    if (this.#body === null) {
      if (this.#chunk === null) this.#chunk = chunk
      else (this.#chunks ??= [this.#chunk]).push(chunk)
      return true
    }
    // false pauses the upstream until the body is read again (`resume`).
    return this.#body.pass(chunk)
  }

  onComplete (): void {
    this.#finish()
    if (this.#body !== null) {
      this.#body.push(null)
      return
    }
    const body = this.#chunks !== null ? Buffer.concat(this.#chunks) : this.#chunk ?? EMPTY_BODY
    this.#settle({ statusCode: this.#statusCode, headers: this.#headers, body })
  }

  onError (err: Error): void {
    this.#finish()
    if (this.#body !== null && this.reason === null) this.#body.onUpstreamError(err)
    else this.#fail(err)
  }

  #finish (): void {
    this.#finished = true
    this.#client.untrack(this)
    this.#client.release()
  }

  #settle (answer: UpstreamAnswer): void {
    if (this.#settled) return
    this.#settled = true
    this.#resolve(answer)
  }

  #fail (err: Error): void {
    if (this.#settled) return
    this.#settled = true
    this.#reject(err)
  }
}
