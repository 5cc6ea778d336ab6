import rateLimit from '@fastify/rate-limit'
import fp from 'fastify-plugin'
import { Redis } from 'ioredis'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { RateLimitedError } from '../errors.ts'
import { routedPath } from './hygiene.ts'
import { RAG_ROUTES } from '../routes/upstreams.ts'

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

// Sign-in, sign-up and password reset: the better-auth paths that guess or send mail.
const AUTH_GROUP = /^\/auth\/(?:sign-in|sign-up)(?:\/|$)|^\/auth\/(?:forget-password|request-password-reset|reset-password)(?:\/|$)/
const RAG_PATHS = new Set<string>(RAG_ROUTES)

export function isAuthGroup (path: string): boolean {
  return AUTH_GROUP.test(path)
}

type Limiter = (request: FastifyRequest) => Promise<{ isAllowed: true } | { isAllowed: false, isExceeded: boolean, ttlInSeconds: number }>

async function check (limiter: Limiter, request: FastifyRequest, group: string): Promise<void> {
  const result = await limiter(request)
  // `isAllowed` means "on the allow list" (none here); the count decides.
  if (result.isAllowed || !result.isExceeded) return
  request.log.warn({ event: 'rate_limited', group }, 'rate limit reached')
  const retryAfter = Math.max(1, result.ttlInSeconds)
  throw Object.assign(new RateLimitedError(String(retryAfter)), { headers: { 'retry-after': String(retryAfter) } })
}

/**
 * Three budgets, decided on the normalised path and the client address Fastify resolved (the socket,
 * or `X-Forwarded-For` only with `TRUST_PROXY`): every route; the auth group; the RAG routes per
 * user when signed in, per address when not. The RAG check runs after the access policy has
 * resolved the caller.
 */
async function rateLimitPlugin (app: FastifyInstance, options: RateLimitPluginOptions): Promise<void> {
  let redis: Redis | undefined
  if (options.redisUrl !== undefined) {
    redis = new Redis(options.redisUrl, { connectTimeout: 1000, maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: true })
    redis.on('error', (err) => { app.log.warn({ err }, 'redis unreachable for rate-limit counters') })
    await redis.connect()
    app.addHook('onClose', async () => { await redis?.quit() })
  }
  // With Redis unreachable the limiter lets requests through (and logs): an outage of the counter
  // store must not take the docs site down with it.
  await app.register(rateLimit, { global: false, redis, nameSpace: 'auth-gateway-rl:', skipOnError: true })
  const general = app.createRateLimit({ max: options.max, timeWindow: options.window, keyGenerator: (r) => `all:${r.ip}` })
  const auth = app.createRateLimit({ max: options.authMax, timeWindow: options.authWindow, keyGenerator: (r) => `auth:${r.ip}` })
  const ragAnon = app.createRateLimit({ max: options.ragAnon, timeWindow: options.window, keyGenerator: (r) => `rag-ip:${r.ip}` })
  const ragUser = app.createRateLimit({ max: options.ragUser, timeWindow: options.window, keyGenerator: (r) => `rag-user:${r.identity?.userId ?? r.ip}` })

  app.addHook('onRequest', async (request) => {
    await check(general, request, 'all')
    if (isAuthGroup(routedPath(request))) await check(auth, request, 'auth')
  })
  app.addHook('preValidation', async (request) => {
    if (request.method !== 'POST' || !RAG_PATHS.has(routedPath(request))) return
    if (request.identity === null) await check(ragAnon, request, 'rag-anonymous')
    else await check(ragUser, request, 'rag-user')
  })
}

export default fp(rateLimitPlugin, { name: 'rate-limit' })
