import fp from 'fastify-plugin'
import { createRequire } from 'node:module'
import type { Redis } from 'ioredis'
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import { clientAddress } from '../client-address.ts'
import { RateLimitedError } from '../errors.ts'
import { routedPath } from './normalise.ts'
import { RAG_ROUTES } from '../route-paths.ts'
import { connectWithin, createRedis } from '../../shared/redis.ts'

export interface RateLimitPluginOptions {
  authMax: number
  authWindow: number
  max: number
  window: number
  ragAnon: number
  ragUser: number
  /** Per API key, on every route (see `callerBudget`). */
  apiKey: number
  /** Shared counters for several replicas; in-process counters when unset, and while Redis does not answer. */
  redisUrl?: string
}

// The better-auth paths that check a password or send mail: a stolen session must not be able to
// guess the password through change-password or delete-user outside the sign-in budget.
const AUTH_GROUP = /^\/auth\/(?:login|signup|sign-in|sign-up|change-password|change-email|verify-password|delete-user|reset-password|request-password-reset|forget-password|send-verification-email|two-factor)(?:\/|$)/
const RAG_PATHS = new Set<string>(RAG_ROUTES)
// Liveness and readiness: counted on the replica alone, so a hung Redis cannot slow them down.
const PROBE_PATHS = new Set(['/health', '/ready'])
const NAMESPACE = 'auth-gateway-rl:'
// Distinct keys (addresses and users) the in-process store remembers, least recently seen dropped first.
const LOCAL_KEYS = 5000

export function isAuthGroup (path: string): boolean {
  return AUTH_GROUP.test(path)
}

interface Count {
  current: number
  ttl: number
}

/** The counter stores of `@fastify/rate-limit` (fixed windows): in-process LRU, or a Lua script on Redis. */
interface CounterStore<E> {
  incr (key: string, callback: (err: E, result: Count | null) => void, timeWindow: number, max: number): void
}
type StoreConstructor<E, A extends unknown[]> = new (continueExceeding: boolean, exponentialBackoff: boolean, ...rest: A) => CounterStore<E>
const require = createRequire(import.meta.url)
const LocalStore = require('@fastify/rate-limit/store/LocalStore.js') as StoreConstructor<null, [cache: number]>
const RedisStore = require('@fastify/rate-limit/store/RedisStore.js') as StoreConstructor<Error | null, [redis: Redis, key: string]>

// How often a connection that is open but stopped answering is tried again.
const DEFAULT_REDIS_RETRY_INTERVAL_MS = 1000
const RETRY_KEY = 'retry'

/** Counts one request against a key; never fails, so a budget can never be skipped. */
interface Counter {
  count (key: string, window: number, max: number, callback: (count: Count) => void): void
}

class LocalCounter implements Counter {
  readonly #store = new LocalStore(false, false, LOCAL_KEYS)

  count (key: string, window: number, max: number, callback: (count: Count) => void): void {
    // Synchronous, and the result is the entry the LRU keeps (later requests change it): copied.
    this.#store.incr(key, (_err, result) => { callback({ current: result?.current ?? 1, ttl: result?.ttl ?? window }) }, window, max)
  }
}

/**
 * Redis's counters while Redis answers, the replica's own while it does not (no connection, an
 * error, or no answer within the command timeout). Every request is counted in-process as well, so
 * a replica that loses Redis mid-window goes on from what it has seen rather than from zero.
 */
class RedisCounter implements Counter {
  readonly #redis: Redis
  readonly #shared: CounterStore<Error | null>
  readonly #local: LocalCounter
  readonly #log: FastifyBaseLogger
  #up = false
  #outage = false
  #closed = false
  #retry: NodeJS.Timeout | undefined
  #retrying = false

  constructor (redis: Redis, local: LocalCounter, log: FastifyBaseLogger) {
    this.#redis = redis
    this.#shared = new RedisStore(false, false, redis, NAMESPACE)
    this.#local = local
    this.#log = log
    redis.on('ready', () => { this.#markUp() })
    // ioredis emits `error` and `close` for every failed reconnect: the outage is logged once.
    redis.on('error', (err: Error) => { this.#markDown(err) })
    redis.on('close', () => { this.#markDown(undefined) })
  }

  /** Whether requests are counted in Redis (shared) rather than per replica. */
  get up (): boolean {
    return this.#up
  }

  count (key: string, window: number, max: number, callback: (count: Count) => void): void {
    this.#local.count(key, window, max, (local) => {
      if (!this.#up) {
        callback(local)
        return
      }
      this.#shared.incr(key, (err, shared) => {
        if (err === null && shared !== null) {
          callback(shared)
          return
        }
        this.#markDown(err ?? undefined)
        // A hung server keeps its connection open and ioredis never reconnects: try it again ourselves.
        this.#retry ??= setInterval(() => { this.#tryAgain() }, DEFAULT_REDIS_RETRY_INTERVAL_MS).unref()
        callback(local)
      }, window, max)
    })
  }

  close (): void {
    this.#closed = true
    clearInterval(this.#retry)
    this.#redis.disconnect()
  }

  // With the real script, so a Redis that answers PING but refuses writes (OOM, a read-only replica) stays down.
  #tryAgain (): void {
    if (this.#retrying || this.#redis.status !== 'ready') return
    this.#retrying = true
    this.#shared.incr(RETRY_KEY, (err) => {
      this.#retrying = false
      if (err === null) this.#markUp()
    }, DEFAULT_REDIS_RETRY_INTERVAL_MS, 1)
  }

  #markUp (): void {
    clearInterval(this.#retry)
    this.#retry = undefined
    this.#up = true
    if (!this.#outage) return
    this.#outage = false
    this.#log.info({ event: 'redis_up' }, 'redis answers again: rate limits counted in redis')
  }

  #markDown (err: Error | undefined): void {
    this.#up = false
    if (this.#closed) return
    if (this.#outage) {
      this.#log.debug({ err }, 'redis still unreachable')
      return
    }
    this.#outage = true
    this.#log.warn({ event: 'redis_down', err }, 'redis unreachable: rate limits counted per replica until it answers')
  }
}

/**
 * One budget: `max` requests per `window` ms per key. Counted through the store's callback, so with
 * in-process counters a request is checked without a promise or a turn of the event loop.
 */
class Budget {
  readonly #counter: Counter
  readonly #group: string
  readonly #max: number
  readonly #window: number

  constructor (counter: Counter, group: string, max: number, window: number) {
    this.#counter = counter
    this.#group = group
    this.#max = max
    this.#window = window
  }

  /** Counts the request against `key`; `done` gets a 429 error once the budget is spent. */
  take (request: FastifyRequest, key: string, done: HookHandlerDoneFunction): void {
    this.#counter.count(key, this.#window, this.#max, (result) => {
      if (result.current <= this.#max) {
        done()
        return
      }
      request.log.warn({ event: 'rate_limited', group: this.#group }, 'rate limit reached')
      request.server.metrics?.rateLimited.inc({ group: this.#group })
      const retryAfter = String(Math.max(1, Math.ceil(result.ttl / 1000)))
      done(Object.assign(new RateLimitedError(retryAfter), { headers: { 'retry-after': retryAfter } }))
    })
  }
}

async function connectRedis (app: FastifyInstance, url: string, local: LocalCounter): Promise<Counter> {
  const redis = await createRedis(url)
  const counter = new RedisCounter(redis, local, app.log)
  app.metrics?.watchRedis(() => counter.up)
  app.addHook('onClose', async () => { counter.close() })
  await connectWithin(redis)
  return counter
}

/**
 * Four budgets, decided on the normalised path and the canonical client address (the socket, or
 * the rightmost untrusted `X-Forwarded-For` entry with `TRUST_PROXY`): every route; the auth
 * group; the RAG routes per user when signed in, per address when not; an API key's own, on every
 * route it opens (in place of the RAG budget). The last two run after the access policy has
 * resolved the caller. `/health` and `/ready` spend the first budget on this
 * replica's counters only. With Redis away the budgets stay, per replica (docs/redis.md).
 */
async function rateLimitPlugin (app: FastifyInstance, options: RateLimitPluginOptions): Promise<void> {
  const local = new LocalCounter()
  const counter = options.redisUrl === undefined ? local : await connectRedis(app, options.redisUrl, local)
  const general = new Budget(counter, 'all', options.max, options.window)
  // The same budget on this replica's counters only: a load balancer probes each replica itself.
  const probes = new Budget(local, 'all', options.max, options.window)
  const auth = new Budget(counter, 'auth', options.authMax, options.authWindow)
  const ragAnon = new Budget(counter, 'rag-anonymous', options.ragAnon, options.window)
  const ragUser = new Budget(counter, 'rag-user', options.ragUser, options.window)
  const apiKey = new Budget(counter, 'api-key', options.apiKey, options.window)

  app.addHook('onRequest', function rateLimit (request, _reply, done) {
    // The CORS plugin answers every OPTIONS itself (204, or 404 to an unlisted origin), never forwarding
    // it, and any page can make a browser send one: charging them would let a foreign site spend a
    // reader's sign-in budget.
    if (request.method === 'OPTIONS') {
      done()
      return
    }
    const ip = clientAddress(request)
    const path = routedPath(request)
    if (PROBE_PATHS.has(path)) {
      probes.take(request, `all:${ip}`, done)
      return
    }
    if (!isAuthGroup(path)) {
      general.take(request, `all:${ip}`, done)
      return
    }
    general.take(request, `all:${ip}`, (err) => {
      if (err !== undefined && err !== null) done(err)
      else auth.take(request, `auth:${ip}`, done)
    })
  })
  app.addHook('preValidation', function callerBudget (request, _reply, done) {
    // A key is counted on its own, wherever its scope lets it go: a notebook cannot spend the
    // reader's own chatbot budget, and one leaked key is throttled without its owner's other keys.
    const key = request.identity?.apiKey
    if (key !== undefined) {
      apiKey.take(request, `key:${key.id}`, done)
      return
    }
    if (request.method !== 'POST' || !RAG_PATHS.has(routedPath(request))) {
      done()
      return
    }
    if (request.identity === null) ragAnon.take(request, `rag-ip:${clientAddress(request)}`, done)
    else ragUser.take(request, `rag-user:${request.identity.userId}`, done)
  })
}

export default fp(rateLimitPlugin, { name: 'rate-limit' })
