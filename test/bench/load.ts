import autocannon from 'autocannon'
import type { Request } from 'autocannon'

/* The load generator: autocannon in the driver process, 50 connections, one JSON POST. */

export const CONNECTIONS = 50
export const BODY = JSON.stringify({ question: 'How does a humanoid robot estimate its joint positions?', k: 4 })

export interface Figures {
  rps: number
  p50: number
  p99: number
  errors: number
}

export type Run = Figures & { requests: number }

export interface Load {
  url: string
  method?: 'GET' | 'POST'
  headers?: Record<string, string>
  body?: string
  connections?: number
  overallRate?: number
  /** Header sets every request takes in turn. */
  rotate?: Rotation
}

/**
 * Header sets (credentials) taken in turn by every request across all connections: one cursor, not
 * one per connection, so that concurrent connections never send the same credential together. It
 * carries on where the previous load left it.
 */
export class Rotation {
  readonly #sets: ReadonlyArray<Readonly<Record<string, string>>>
  #next = 0

  constructor (sets: ReadonlyArray<Readonly<Record<string, string>>>) {
    if (sets.length === 0) throw new Error('a rotation needs at least one header set')
    this.#sets = sets
  }

  get size (): number {
    return this.#sets.length
  }

  next (): Readonly<Record<string, string>> {
    const set = this.#sets[this.#next]
    this.#next = this.#next + 1 === this.#sets.length ? 0 : this.#next + 1
    return set
  }
}

/** One autocannon `requests` entry whose every request takes the rotation's next header set. */
function rotating (headers: Record<string, string>, rotation: Rotation): Request[] {
  // A fresh headers object each time: autocannon keeps what setupRequest hands back for the next build.
  return [{ setupRequest: (request) => ({ ...request, headers: { ...headers, ...rotation.next() } }) }]
}

export async function load (spec: Load, duration: number): Promise<Run> {
  const headers = { 'content-type': 'application/json', ...spec.headers }
  const result = await autocannon({
    url: spec.url,
    method: spec.method ?? 'POST',
    headers,
    body: spec.body ?? (spec.method === 'GET' ? undefined : BODY),
    connections: spec.connections ?? CONNECTIONS,
    overallRate: spec.overallRate,
    requests: spec.rotate === undefined ? undefined : rotating(headers, spec.rotate),
    duration
  })
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors + result.timeouts + result.non2xx,
    requests: result.requests.total
  }
}

export function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}
