import cors from '@fastify/cors'
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'

export interface CorsPluginOptions {
  /** Exact-match origins allowed to call with credentials. */
  allowedOrigins: readonly string[]
}

/**
 * CORS with credentials for the exact origins in `ALLOWED_ORIGINS`. A disallowed origin gets no
 * `Access-Control-Allow-Origin` at all, so the browser keeps the answer from the page.
 */
async function corsPlugin (app: FastifyInstance, options: CorsPluginOptions): Promise<void> {
  const allowed = new Set(options.allowedOrigins)
  await app.register(cors, {
    origin: (origin, callback) => { callback(null, origin !== undefined && allowed.has(origin)) },
    credentials: true,
    methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
    allowedHeaders: ['content-type', 'authorization', 'x-requested-with'],
    exposedHeaders: ['retry-after', 'set-auth-token'],
    maxAge: 600,
    // Fastify answers the preflight itself, before routing, for every path.
    hideOptionsRoute: true,
    strictPreflight: true
  })
}

export default fp(corsPlugin, { name: 'cors' })
