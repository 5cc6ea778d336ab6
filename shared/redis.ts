import type { Redis } from 'ioredis'
import { withDeadline } from './deadline.ts'

// A hung Redis must cost a request no more than this: past it the caller goes on without Redis.
export const REDIS_COMMAND_TIMEOUT_MS = 250
const REDIS_CONNECT_TIMEOUT_MS = 1000
const REDIS_RETRY_MAX_MS = 2000

/**
 * A Redis client as every part of the project uses it: no offline queue (a command while Redis is
 * away fails at once instead of waiting), one retry, a deadline on every command, and reconnection
 * forever, at most 2 s apart. Not connected yet: see `connectWithin`.
 */
export async function createRedis (url: string): Promise<Redis> {
  // Loaded only when configured: a single replica never pays for the client.
  const { Redis } = await import('ioredis')
  return new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: REDIS_CONNECT_TIMEOUT_MS,
    commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
    // Always a number: ioredis gives up for good on anything else, and a Redis may come back any time.
    retryStrategy: (attempt: number) => Math.min(attempt * 100, REDIS_RETRY_MAX_MS)
  })
}

/**
 * One connection attempt's worth of waiting, so that a reachable Redis is used from the first
 * request; an unreachable one is retried in the background (never a startup failure).
 */
export async function connectWithin (redis: Redis): Promise<boolean> {
  try {
    await withDeadline(redis.connect(), REDIS_CONNECT_TIMEOUT_MS + REDIS_COMMAND_TIMEOUT_MS, 'Redis')
    return true
  } catch {
    return false
  }
}
