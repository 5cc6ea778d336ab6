import fp from 'fastify-plugin'
import { createRequire } from 'node:module'
import type { Redis } from 'ioredis'
import type { FastifyInstance, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import { clientAddress } from '../client-address.ts'
import { RateLimitedError } from '../errors.ts'
import { routedPath } from './normalise.ts'
import { RAG_ROUTES } from '../route-paths.ts'

export interface RateLimitPluginOptions {
  authMax: number
  authWindow: number
  max: number
  window: number
  ragAnon: number
  ragUser: number
  /** Shared counters for several replicas; in-process counters when unset. */
  redisUrl?: string
}

// The better-auth paths that check a password or send mail: a stolen session must not be able to
// guess the password through change-password or delete-user outside the sign-in budget.
const AUTH_GROUP = /^\/auth\/(?:sign-in|sign-up|change-password|verify-password|delete-user|reset-password|request-password-reset|forget-password|send-verification-email)(?:\/|$)/
const RAG_PATHS = new Set<string>(RAG_ROUTES)
const NAMESPACE = 'auth-gateway-rl:'
// Distinct keys (addresses and users) the in-process store remembers, least recently seen dropped first.
const LOCAL_KEYS = 5000

export function isAuthGroup (path: string): boolean {
  return AUTH_GROUP.test(path)
}

/** The counter stores of `@fastify/rate-limit` (fixed windows): in-process LRU, or a Lua script on Redis. */
interface CounterStore {
  incr (key: string, callback: (err: Error | null, result: { current: number, ttl: number } | null) => void, timeWindow: number, max: number): void
}
type StoreConstructor<A extends unknown[]> = new (continueExceeding: boolean, exponentialBackoff: boolean, ...rest: A) => CounterStore
const require = createRequire(import.meta.url)
const LocalStore = require('@fastify/rate-limit/store/LocalStore.js') as StoreConstructor<[cache: number]>
const RedisStore = require('@fastify/rate-limit/store/RedisStore.js') as StoreConstructor<[redis: Redis, key: string]>

/**
 * One budget: `max` requests per `window` ms per key. Counted through the store's callback, so with
 * in-process counters a request is checked without a promise or a turn of the event loop.
 */
class Budget {
  readonly #store: CounterStore
  readonly #group: string
  readonly #max: number
  readonly #window: number

  constructor (store: CounterStore, group: string, max: number, window: number) {
    this.#store = store
    this.#group = group
    this.#max = max
    this.#window = window
  }

  /** Counts the request against `key`; `done` gets a 429 error once the budget is spent. */
  take (request: FastifyRequest, key: string, done: HookHandlerDoneFunction): void {
    this.#store.incr(key, (err, result) => {
      // With Redis unreachable the request goes through: an outage of the counter store must not
      // take the docs site down with it (the connection's own error events are logged as warnings).
      if (err !== null || result === null) {
        request.log.debug({ err, group: this.#group }, 'rate-limit counter store unavailable')
        done()
        return
      }
      if (result.current <= this.#max) {
        done()
        return
      }
      request.log.warn({ event: 'rate_limited', group: this.#group }, 'rate limit reached')
      const retryAfter = String(Math.max(1, Math.ceil(result.ttl / 1000)))
      done(Object.assign(new RateLimitedError(retryAfter), { headers: { 'retry-after': retryAfter } }))
    }, this.#window, this.#max)
  }
}

/**
 * Three budgets, decided on the normalised path and the canonical client address (the socket, or
 * the rightmost untrusted `X-Forwarded-For` entry with `TRUST_PROXY`): every route; the auth
 * group; the RAG routes per user when signed in, per address when not. The RAG check runs after the
 * access policy has resolved the caller.
 */
async function rateLimitPlugin (app: FastifyInstance, options: RateLimitPluginOptions): Promise<void> {
  let store: CounterStore
  if (options.redisUrl !== undefined) {
    // Loaded only when configured: a single replica never pays for the client.
    const { Redis } = await import('ioredis')
    const redis = new Redis(options.redisUrl, { connectTimeout: 1000, maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: true })
    redis.on('error', (err) => { app.log.warn({ err }, 'redis unreachable for rate-limit counters') })
    await redis.connect()
    app.addHook('onClose', async () => { await redis.quit() })
    store = new RedisStore(false, false, redis, NAMESPACE)
  } else {
    store = new LocalStore(false, false, LOCAL_KEYS)
  }
  const general = new Budget(store, 'all', options.max, options.window)
  const auth = new Budget(store, 'auth', options.authMax, options.authWindow)
  const ragAnon = new Budget(store, 'rag-anonymous', options.ragAnon, options.window)
  const ragUser = new Budget(store, 'rag-user', options.ragUser, options.window)

  app.addHook('onRequest', function rateLimit (request, _reply, done) {
    // The CORS plugin answers every OPTIONS itself (204, or 404 to an unlisted origin), never forwarding
    // it, and any page can make a browser send one: charging them would let a foreign site spend a
    // reader's sign-in budget.
    if (request.method === 'OPTIONS') {
      done()
      return
    }
    const ip = clientAddress(request)
    if (!isAuthGroup(routedPath(request))) {
      general.take(request, `all:${ip}`, done)
      return
    }
    general.take(request, `all:${ip}`, (err) => {
      if (err !== undefined && err !== null) done(err)
      else auth.take(request, `auth:${ip}`, done)
    })
  })
  app.addHook('preValidation', function ragBudget (request, _reply, done) {
    if (request.method !== 'POST' || !RAG_PATHS.has(routedPath(request))) {
      done()
      return
    }
    if (request.identity === null) ragAnon.take(request, `rag-ip:${clientAddress(request)}`, done)
    else ragUser.take(request, `rag-user:${request.identity.userId}`, done)
  })
}

export default fp(rateLimitPlugin, { name: 'rate-limit' })
