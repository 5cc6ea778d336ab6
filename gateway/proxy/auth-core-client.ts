import fp from 'fastify-plugin'
import { Pool } from 'undici'
import type { FastifyInstance } from 'fastify'

declare module 'fastify' {
  interface FastifyInstance {
    /** Keep-alive pool to auth-core for the gateway's own calls (readiness, session look-ups). */
    authCore: Pool
  }
}

export interface AuthCoreClientOptions {
  authCoreUrl: string
}

export const AUTH_CORE_TIMEOUT_MS = 2_000

async function authCoreClient (app: FastifyInstance, options: AuthCoreClientOptions): Promise<void> {
  const pool = new Pool(options.authCoreUrl, {
    connections: 32,
    keepAliveTimeout: 30_000,
    connectTimeout: AUTH_CORE_TIMEOUT_MS,
    headersTimeout: AUTH_CORE_TIMEOUT_MS,
    bodyTimeout: AUTH_CORE_TIMEOUT_MS
  })
  app.decorate('authCore', pool)
  app.addHook('onClose', async () => { await pool.close() })
}

export default fp(authCoreClient, { name: 'auth-core-client' })
