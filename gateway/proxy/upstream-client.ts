import { Pool } from 'undici'
import type { Dispatcher } from 'undici'
import { ClientClosedError, UpstreamCall, UpstreamDeadlineError } from './upstream-call.ts'
import type { CallerConnection } from './upstream-call.ts'

/*
 * The one way the gateway calls another service: one keep-alive undici pool per upstream, each with
 * its timeouts from one table, and one error mapping (`upstreamError` in errors.ts). The auth proxy
 * hands the auth-core pool to @fastify/reply-from, so `/auth/*`, session look-ups, readiness and the
 * profile alias share it. The RAG and app routes call through an `UpstreamClient` (below): one
 * deadline per call, a queue of their own in front of the pool, answers buffered or streamed.
 */

export type UpstreamService = 'auth' | 'rag' | 'app'

/** `UPSTREAM_TIMEOUT` @default 30 s: a RAG answer may take a while; a dead upstream still fails fast on connect. */
export const DEFAULT_UPSTREAM_TIMEOUT_MS = 30_000
/** `UPSTREAM_IDLE_TIMEOUT` @default 30 s: the longest silence inside a streamed answer. */
export const DEFAULT_UPSTREAM_IDLE_TIMEOUT_MS = 30_000
/** `UPSTREAM_MAX_BUFFERED_BYTES` @default 1 MiB: larger answers are streamed. */
export const DEFAULT_UPSTREAM_MAX_BUFFERED_BYTES = 1024 * 1024
/** Session look-ups and readiness checks: a caller waits on them, so they get a shorter deadline on the same pool. */
export const AUTH_LOOKUP_TIMEOUT_MS = 2_000

interface PoolPolicy {
  connections: number
  connectTimeout: number
  /** Headers and body, each. */
  timeout: number
}

/** The timeouts of every upstream, in one place. `timeoutMs` is the RAG and app upstreams' (`UPSTREAM_TIMEOUT`). */
export function upstreamPolicy (service: UpstreamService, timeoutMs: number = DEFAULT_UPSTREAM_TIMEOUT_MS): PoolPolicy {
  // Sign-in hashes a password: under load an answer may queue for seconds.
  if (service === 'auth') return { connections: 64, connectTimeout: 1_000, timeout: 10_000 }
  return { connections: 128, connectTimeout: 2_000, timeout: timeoutMs }
}

export function createUpstreamPool (service: UpstreamService, url: string, timeoutMs?: number): Pool {
  const policy = upstreamPolicy(service, timeoutMs)
  return new Pool(url, {
    connections: policy.connections,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    connectTimeout: policy.connectTimeout,
    headersTimeout: policy.timeout,
    bodyTimeout: policy.timeout
  })
}

/** How the RAG and app upstreams are called. */
export interface UpstreamLimits {
  /**
   * One deadline per call, from the moment it is made: waiting for a connection, connecting, the
   * answer's headers and, for a buffered answer, its body. A streamed answer has started once its
   * headers arrived; from then on `idleTimeoutMs` applies. @default 30000
   */
  timeoutMs: number
  /** The longest silence before and between the chunks of a streamed answer. @default 30000 */
  idleTimeoutMs: number
  /**
   * Answers with a `Content-Length` up to this are buffered and sent in one piece; longer ones, and
   * chunked, event-stream and NDJSON answers, are streamed. @default 1048576
   */
  maxBufferedBytes: number
  /** Calls in flight at once; further calls wait in the client's queue. @default the pool's connections */
  connections?: number
}

export const DEFAULT_UPSTREAM_LIMITS: Readonly<UpstreamLimits> = Object.freeze({
  timeoutMs: DEFAULT_UPSTREAM_TIMEOUT_MS,
  idleTimeoutMs: DEFAULT_UPSTREAM_IDLE_TIMEOUT_MS,
  maxBufferedBytes: DEFAULT_UPSTREAM_MAX_BUFFERED_BYTES
})

/**
 * Calls one upstream over its pool. Calls beyond the pool's connections wait here, not in undici's
 * queue, because undici cannot take back a queued request: a call whose deadline passes or whose
 * client leaves while it waits is dropped at once instead of occupying a connection later.
 */
export class UpstreamClient {
  readonly pool: Pool
  readonly limits: Readonly<UpstreamLimits>
  readonly #connections: number
  #active = 0
  readonly #waiting = new Set<UpstreamCall>()
  // Every call not yet answered, in the order of their deadlines (they share one timeout), under one
  // timer set for the first: cheaper than a timer per call, and as punctual. A list threaded through
  // the calls themselves, so tracking one allocates nothing.
  #first: UpstreamCall | null = null
  #last: UpstreamCall | null = null
  #timer: NodeJS.Timeout | undefined

  constructor (pool: Pool, limits: Readonly<UpstreamLimits> = DEFAULT_UPSTREAM_LIMITS) {
    this.pool = pool
    this.limits = limits
    this.#connections = limits.connections ?? upstreamPolicy('rag').connections
  }

  /**
   * Starts a call; its `answer` settles with the headers (streamed) or the whole body (buffered).
   * `caller` is the client's connection: a waiting call whose client has gone is not sent.
   */
  call (method: Dispatcher.HttpMethod, path: string, headers: Record<string, string | string[]>, body: Buffer | undefined, caller?: CallerConnection): UpstreamCall {
    const call = new UpstreamCall(this, { method, path, headers, body, bodyTimeout: this.limits.idleTimeoutMs }, this.limits, caller)
    call.previous = this.#last
    if (this.#last === null) this.#first = call
    else this.#last.next = call
    this.#last = call
    this.#timer ??= this.#arm(this.limits.timeoutMs)
    if (this.#active < this.#connections) this.#start(call)
    else this.#waiting.add(call)
    return call
  }

  /** Calls dispatched and not finished. */
  get active (): number {
    return this.#active
  }

  /** Calls waiting for a connection. */
  get waiting (): number {
    return this.#waiting.size
  }

  /** @internal The call is answered (or given up): its deadline no longer applies. */
  untrack (call: UpstreamCall): void {
    const { previous, next } = call
    if (previous === null && this.#first !== call) return
    if (previous === null) this.#first = next
    else previous.next = next
    if (next === null) this.#last = previous
    else next.previous = previous
    call.previous = null
    call.next = null
  }

  #arm (delay: number): NodeJS.Timeout {
    const timer = setTimeout(this.#expire, delay)
    // The calls' own connections keep the process alive; a deadline alone does not.
    timer.unref()
    return timer
  }

  readonly #expire = (): void => {
    this.#timer = undefined
    const now = performance.now()
    for (let call = this.#first; call !== null; call = this.#first) {
      if (call.deadline > now) {
        this.#timer = this.#arm(call.deadline - now)
        return
      }
      this.untrack(call)
      call.cancel(new UpstreamDeadlineError(this.limits.timeoutMs))
    }
  }

  /** @internal A waiting call given up (deadline, client gone): it never reaches the pool. */
  withdraw (call: UpstreamCall): boolean {
    return this.#waiting.delete(call)
  }

  /** @internal A dispatched call finished (answered, failed or aborted): its connection is free. */
  release (): void {
    this.#active--
    // Not in undici's own callback (the connection it just freed is not yet idle there), and after
    // this turn's I/O: callers whose clients left at the same moment are withdrawn first.
    if (this.#waiting.size > 0) setImmediate(() => { this.#next() })
  }

  #next (): void {
    while (this.#active < this.#connections && this.#waiting.size > 0) {
      const call = this.#waiting.values().next().value as UpstreamCall
      this.#waiting.delete(call)
      // Its client left in the same instant as the call that freed the slot (its close event not yet handled).
      if (call.abandoned()) call.cancel(new ClientClosedError())
      else this.#start(call)
    }
  }

  #start (call: UpstreamCall): void {
    this.#active++
    call.dispatch(this.pool)
  }
}

export { ClientClosedError, UpstreamDeadlineError } from './upstream-call.ts'
