import fp from 'fastify-plugin'
import type { Pool } from 'undici'
import type { FastifyInstance } from 'fastify'
import { createUpstreamPool } from '../proxy/upstream-client.ts'

declare module 'fastify' {
  interface FastifyInstance {
    /** The pool to auth-core: the `/auth/*` proxy, session look-ups, readiness and the profile alias. */
    authCore: Pool
    /** The pools to the RAG and app upstreams, when configured. */
    upstreamPools: { rag: Pool | undefined, app: Pool | undefined }
  }
}

export interface UpstreamsPluginOptions {
  authCoreUrl: string
  ragUpstreamUrl: string | undefined
  appUpstreamUrl: string | undefined
  /** Headers and body timeout of RAG and app calls. @default 30000 */
  timeoutMs?: number
}

/** One pool per upstream (the timeouts of `upstreamPolicy`), closed with the gateway. */
async function upstreamsPlugin (app: FastifyInstance, options: UpstreamsPluginOptions): Promise<void> {
  const authCore = createUpstreamPool('auth', options.authCoreUrl)
  const rag = options.ragUpstreamUrl === undefined ? undefined : createUpstreamPool('rag', options.ragUpstreamUrl, options.timeoutMs)
  const appPool = options.appUpstreamUrl === undefined ? undefined : createUpstreamPool('app', options.appUpstreamUrl, options.timeoutMs)
  app.decorate('authCore', authCore)
  app.decorate('upstreamPools', { rag, app: appPool })
  app.addHook('onClose', async () => {
    await Promise.all([authCore.close(), rag?.close(), appPool?.close()])
  })
}

export default fp(upstreamsPlugin, { name: 'upstreams' })
