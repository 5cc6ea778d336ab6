import { startHaproxy } from '../haproxy.ts'
import type { Haproxy } from '../haproxy.ts'
import type { Child } from './children.ts'

/*
 * HAProxy in front of gateway replicas (test/haproxy.ts: round robin, keep-alive to the replicas,
 * X-Forwarded-For added): one in front of one replica, one in front of two, so the proxy's own cost
 * and the second replica's gain are both visible.
 */

/** The loopback address HAProxy connects to the replicas from: their `TRUST_PROXY`. */
export const HAPROXY_SOURCE = '127.0.0.2'
// /ready reads Postgres and auth-core: checked seldom, so the checks do not load what is measured.
const CHECK_INTERVAL_MS = 2000

export interface Replicas {
  one: Haproxy
  two: Haproxy
  close: () => Promise<void>
}

export async function startReplicas (gateways: readonly [Child, Child]): Promise<Replicas> {
  const teardowns: Array<() => unknown> = []
  const t = { teardown: (fn: () => unknown) => { teardowns.push(fn) } }
  const close = async (): Promise<void> => { for (const fn of teardowns.reverse()) await fn() }
  try {
    const backends = gateways.map((gateway, i) => ({ name: `gateway${i + 1}`, address: new URL(gateway.url).host }))
    const options = { source: HAPROXY_SOURCE, checkIntervalMs: CHECK_INTERVAL_MS }
    const one = await startHaproxy(t, backends.slice(0, 1), options)
    const two = await startHaproxy(t, backends, options)
    await one.waitFor('UP', ['gateway1'])
    await two.waitFor('UP', ['gateway1', 'gateway2'])
    return { one, two, close }
  } catch (err) {
    await close()
    throw err
  }
}
