import { randomUUID } from 'node:crypto'
import type { Redis } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import { connectWithin, createRedis } from '../../shared/redis.ts'

/** The Redis pub/sub channel on which replicas announce what they evicted. */
export const REVOCATION_CHANNEL = 'auth-gateway:revocations'

/**
 * What one replica tells the others to forget: a user's sessions and token generation, one session
 * (its cache key), a user's consented profile claims (after a profile write), or whether a token
 * client's login is live (after a logout or a reused refresh token), or an API key (deleted or changed).
 */
export type Revocation = { user: string } | { session: string } | { claims: string } | { login: string } | { apiKey: string }

export interface RevocationHandlers {
  /** Forget what a message names (never called for this replica's own messages). */
  apply: (revocation: Revocation) => void
  /** Messages may have been missed (the subscription was down): forget every cached session and generation. */
  gap: () => void
}

const MAX_MESSAGE_BYTES = 1024

/** A message as received; anything else on the channel is ignored (it can only ever make a replica forget). */
function parse (raw: string): { origin: string, revocation: Revocation } | null {
  if (raw.length > MAX_MESSAGE_BYTES) return null
  let message: unknown
  try {
    message = JSON.parse(raw)
  } catch {
    return null
  }
  if (message === null || typeof message !== 'object') return null
  const { origin, user, session, claims, login, apiKey } = message as Record<string, unknown>
  if (typeof origin !== 'string') return null
  if (typeof user === 'string' && user !== '') return { origin, revocation: { user } }
  if (typeof session === 'string' && session !== '') return { origin, revocation: { session } }
  if (typeof claims === 'string' && claims !== '') return { origin, revocation: { claims } }
  if (typeof login === 'string' && login !== '') return { origin, revocation: { login } }
  if (typeof apiKey === 'string' && apiKey !== '') return { origin, revocation: { apiKey } }
  return null
}

/**
 * Sign-outs and revocations, broadcast to every replica over Redis pub/sub, so that what one replica
 * evicts from its caches the others evict within milliseconds. A message can only make a replica
 * forget (and look the caller up again), never vouch for anyone. A lost message is bounded by the
 * caches' TTL; a subscription that was down forgets everything cached once it is back.
 */
export class RevocationBus {
  readonly #publisher: Redis
  readonly #subscriber: Redis
  readonly #origin = randomUUID()
  readonly #log: FastifyBaseLogger
  #publishFailing = false
  /** Set while the subscription is (or has been) down since it last delivered. */
  #missed = false
  #closed = false

  private constructor (publisher: Redis, subscriber: Redis, log: FastifyBaseLogger, handlers: RevocationHandlers) {
    this.#publisher = publisher
    this.#subscriber = subscriber
    this.#log = log
    publisher.on('error', () => {})
    subscriber.on('error', () => {})
    subscriber.on('close', () => { this.#missed = true })
    subscriber.on('ready', () => {
      // After a reconnect ioredis subscribes again itself; once more is harmless.
      subscriber.subscribe(REVOCATION_CHANNEL).then(() => {
        if (!this.#missed) return
        this.#missed = false
        handlers.gap()
        log.info({ event: 'revocation_bus_up' }, 'revocation broadcast subscribed again: cached sessions forgotten')
      }, (err: unknown) => { log.warn({ err }, 'revocation broadcast: subscribing failed') })
    })
    subscriber.on('message', (channel: string, raw: string) => {
      if (channel !== REVOCATION_CHANNEL) return
      const message = parse(raw)
      if (message === null || message.origin === this.#origin) return
      handlers.apply(message.revocation)
    })
  }

  /** Connects both connections, waiting at most about a second (a replica starts without Redis). */
  static async connect (url: string, log: FastifyBaseLogger, handlers: RevocationHandlers): Promise<RevocationBus> {
    const publisher = await createRedis(url)
    const subscriber = publisher.duplicate()
    const bus = new RevocationBus(publisher, subscriber, log, handlers)
    const [published, subscribed] = await Promise.all([connectWithin(publisher), connectWithin(subscriber)])
    if (!subscribed) bus.#missed = true
    if (!published || !subscribed) log.warn({ event: 'redis_down' }, 'redis unreachable at startup: revocations reach the other replicas by their cache TTL until it answers')
    return bus
  }

  /**
   * Announces a revocation; resolves once Redis has handed it to every subscriber (or the command
   * timed out: then the other replicas fall back on their cache TTL). Never rejects.
   */
  async publish (revocation: Revocation): Promise<void> {
    if (this.#closed) return
    try {
      await this.#publisher.publish(REVOCATION_CHANNEL, JSON.stringify({ origin: this.#origin, ...revocation }))
      if (this.#publishFailing) this.#log.info({ event: 'revocation_bus_up' }, 'revocation broadcast reaches the other replicas again')
      this.#publishFailing = false
    } catch (err) {
      if (!this.#publishFailing) this.#log.warn({ event: 'redis_down', err }, 'revocation broadcast failed: the other replicas forget by their cache TTL')
      this.#publishFailing = true
    }
  }

  close (): void {
    this.#closed = true
    this.#publisher.disconnect()
    this.#subscriber.disconnect()
  }
}
