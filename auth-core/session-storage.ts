import type { SecondaryStorage } from 'better-auth'
import type { Redis } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import { connectWithin, createRedis } from '../shared/redis.ts'

/** Every key auth-core writes to Redis starts with this; nothing else in Redis is ever touched. */
export const SESSION_STORAGE_PREFIX = 'auth-gateway-session:'
const PURGE_BATCH = 500
// How often a connection that is open but stopped answering is tried again.
const RETRY_INTERVAL_MS = 1000

// INCR that sets the TTL only when it creates the key (a fixed window, as better-auth requires).
const INCREMENT = `local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n`

/**
 * Better-Auth's `secondaryStorage` on Redis, in front of Postgres: sessions and verification values
 * are written to both (`storeSessionInDatabase`, `verification.storeInDatabase`), and get-session
 * reads Redis first. Postgres stays the record, so Redis is a cache that may be lost or stale but
 * never the only copy:
 *
 * - Redis away (down, hung past the command timeout, refusing writes): reads answer "not here", so
 *   better-auth falls back to Postgres; writes and deletes are skipped.
 * - A delete skipped during an outage would leave a signed-out session in Redis, so when Redis
 *   answers again every key of ours is removed before Redis is used again (sessions are then read
 *   from Postgres). Until that purge has finished, Redis stays unused.
 */
export class RedisSessionStorage implements SecondaryStorage {
  readonly #redis: Redis
  readonly #log: FastifyBaseLogger
  #up = false
  /** An outage was seen: what Redis holds may have missed deletes. */
  #stale = false
  #purging: Promise<void> | null = null
  #closed = false
  #retry: NodeJS.Timeout | undefined

  constructor (redis: Redis, log: FastifyBaseLogger) {
    this.#redis = redis
    this.#log = log
    redis.on('ready', () => { this.#recover() })
    redis.on('error', (err: Error) => { this.#down(err) })
    redis.on('close', () => { this.#down(undefined) })
    if (redis.status === 'ready') this.#recover()
  }

  /** Whether get-session currently reads Redis (for `/ready` and tests). */
  get up (): boolean {
    return this.#up
  }

  async get (key: string): Promise<string | null> {
    if (!this.#up) return null
    try {
      return await this.#redis.get(SESSION_STORAGE_PREFIX + key)
    } catch (err) {
      this.#failed(err)
      return null
    }
  }

  async getAndDelete (key: string): Promise<string | null> {
    if (!this.#up) {
      this.#stale = true
      return null
    }
    try {
      return await this.#redis.getdel(SESSION_STORAGE_PREFIX + key)
    } catch (err) {
      this.#failed(err)
      return null
    }
  }

  async set (key: string, value: string, ttl?: number): Promise<void> {
    if (!this.#up) {
      // Postgres has it; Redis may hold an older value of the key.
      this.#stale = true
      return
    }
    try {
      if (ttl !== undefined && ttl > 0) await this.#redis.set(SESSION_STORAGE_PREFIX + key, value, 'EX', Math.ceil(ttl))
      else await this.#redis.set(SESSION_STORAGE_PREFIX + key, value)
    } catch (err) {
      this.#failed(err)
    }
  }

  async delete (key: string): Promise<void> {
    if (!this.#up) {
      this.#stale = true
      return
    }
    try {
      await this.#redis.del(SESSION_STORAGE_PREFIX + key)
    } catch (err) {
      this.#failed(err)
    }
  }

  async increment (key: string, ttl: number): Promise<number> {
    // Only better-auth's own rate limiter counts here, and it is off: the gateway limits.
    return Number(await this.#redis.eval(INCREMENT, 1, SESSION_STORAGE_PREFIX + key, String(Math.max(1, Math.ceil(ttl)))))
  }

  close (): void {
    this.#closed = true
    this.#up = false
    clearInterval(this.#retry)
    this.#redis.disconnect()
  }

  /** A command failed or timed out: Redis is treated as away until it answers again. */
  #failed (err: unknown): void {
    this.#down(err instanceof Error ? err : undefined)
    // A hung server keeps its connection open, so no `ready` follows: ask it again ourselves.
    this.#retry ??= setInterval(() => {
      if (this.#redis.status !== 'ready') return
      this.#redis.ping().then(() => { this.#recover() }, () => {})
    }, RETRY_INTERVAL_MS).unref()
  }

  #down (err: Error | undefined): void {
    if (this.#closed) return
    if (this.#up) this.#log.warn({ event: 'redis_down', err }, 'redis unreachable: sessions read from Postgres until it answers')
    this.#up = false
    this.#stale = true
  }

  #recover (): void {
    if (this.#closed || this.#up || this.#purging !== null) return
    clearInterval(this.#retry)
    this.#retry = undefined
    if (!this.#stale) {
      this.#up = true
      return
    }
    this.#purging = this.#purge().then(() => {
      this.#stale = false
      this.#up = this.#redis.status === 'ready'
      if (this.#up) this.#log.info({ event: 'redis_up' }, 'redis answers again: sessions cached in redis')
    }, (err: unknown) => {
      this.#log.warn({ err }, 'redis: stale sessions could not be removed; Postgres stays the only source')
    }).finally(() => { this.#purging = null })
  }

  /** Removes every key of ours (SCAN, never KEYS or FLUSHDB: the database may be shared). */
  async #purge (): Promise<void> {
    let cursor = '0'
    do {
      const [next, keys] = await this.#redis.scan(cursor, 'MATCH', `${SESSION_STORAGE_PREFIX}*`, 'COUNT', PURGE_BATCH)
      cursor = next
      if (keys.length > 0) await this.#redis.unlink(...keys)
    } while (cursor !== '0')
  }
}

/** Connects (waiting at most about a second: auth-core starts and serves without Redis). */
export async function connectSessionStorage (url: string, log: FastifyBaseLogger): Promise<RedisSessionStorage> {
  const redis = await createRedis(url)
  const storage = new RedisSessionStorage(redis, log)
  if (!await connectWithin(redis)) log.warn({ event: 'redis_down' }, 'redis unreachable at startup: sessions read from Postgres until it answers')
  return storage
}
