import { Pool, util } from 'undici'
import type { Dispatcher } from 'undici'

/*
 * The one way the gateway calls another service: one keep-alive undici pool per upstream, each with
 * its timeouts from one table, and one error mapping (`upstreamError` in errors.ts). The auth proxy
 * hands the auth-core pool to @fastify/reply-from, so `/auth/*`, session look-ups, readiness and the
 * profile alias share it.
 */

export type UpstreamService = 'auth' | 'rag' | 'app'

/** @default 30 s: a RAG answer may take a while; a dead upstream still fails fast on connect. */
export const DEFAULT_UPSTREAM_TIMEOUT_MS = 30_000
/** Session look-ups and readiness checks: a caller waits on them, so they get a shorter deadline on the same pool. */
export const AUTH_LOOKUP_TIMEOUT_MS = 2_000

interface PoolPolicy {
  connections: number
  connectTimeout: number
  /** Headers and body, each. */
  timeout: number
}

/** The timeouts of every upstream, in one place. `timeoutMs` is the RAG and app upstreams' (`UPSTREAM_TIMEOUT` later). */
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

export interface UpstreamAnswer {
  statusCode: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
}

/**
 * One buffered upstream call through undici's dispatcher: the answer's chunks are collected as they
 * arrive, without the stream and body mixin of `pool.request()` (the largest cost of a small proxied call).
 */
export function callBuffered (pool: Pool, options: Dispatcher.DispatchOptions): Promise<UpstreamAnswer> {
  return new Promise((resolve, reject) => {
    let statusCode = 0
    let headers: UpstreamAnswer['headers'] = {}
    const chunks: Buffer[] = []
    // undici's pools take the callback handler; `onHeaders` repeats for informational (1xx) answers.
    pool.dispatch(options, {
      onConnect () {},
      onHeaders (status, rawHeaders) {
        if (status < 200) return true
        statusCode = status
        headers = util.parseHeaders(rawHeaders)
        return true
      },
      onData (chunk) {
        chunks.push(chunk)
        return true
      },
      onComplete () {
        resolve({ statusCode, headers, body: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks) })
      },
      onError (err) {
        reject(err)
      }
    })
  })
}

