import type { FastifyInstance } from 'fastify'
import { loadConfig } from '../../shared/config.ts'
import { createPool } from '../../shared/db.ts'
import { loggerOptions } from '../../shared/log.ts'
import { memorySample } from './memory.ts'
import type { BenchMessage, BenchReply } from './service-messages.ts'

/*
 * One service of the benchmark, in its own process, configured from the environment the driver
 * passes: `auth-core` (migrates first) or `gateway`. Answers the driver's messages
 * (service-messages.ts): its CPU time, memory and caches; auth-core also seeds readers.
 */
const role = process.argv[2]
const config = loadConfig(process.env)
if (config.databaseUrl === undefined) throw new Error('the benchmark passes DATABASE_URL')
const pool = createPool(config.databaseUrl, { max: 20 })
let app: FastifyInstance
let sessionLookups: number | null = null
// Each process loads only its own service, as `start:gateway` / `start:auth-core` do in production.
if (role === 'auth-core') {
  const [{ buildAuthCore }, { createAuthOptions }, { migrate }] = await Promise.all([
    import('../../auth-core/app.ts'),
    import('../../auth-core/auth.ts'),
    import('../../shared/migrate.ts')
  ])
  await migrate(pool, createAuthOptions(config, pool))
  app = await buildAuthCore(config, { pool, logger: loggerOptions(config.logLevel) })
  // How many requests the gateway's session cache did not answer (authed-many's miss rate).
  sessionLookups = 0
  app.addHook('onRequest', (request, _reply, done) => {
    if (request.url.startsWith('/api/validate-session')) sessionLookups = (sessionLookups ?? 0) + 1
    done()
  })
  await app.listen({ host: '127.0.0.1', port: config.authCorePort })
} else {
  const { buildGateway } = await import('../../gateway/app.ts')
  const { startMetrics } = await import('../../shared/metrics.ts')
  const { startTracing } = await import('../../shared/tracing.ts')
  // METRICS_PORT and OTEL_EXPORTER_OTLP_ENDPOINT as server.ts reads them: the public-observed scenario's gateway.
  const metrics = startMetrics(config)
  app = await buildGateway(config, { pool, logger: loggerOptions(config.logLevel), metrics, tracing: startTracing(config, 'gateway') })
  await app.listen({ host: config.host, port: config.port })
  if (metrics !== undefined) await metrics.listen()
}
const address = app.server.address()
if (address === null || typeof address === 'string') throw new Error('not listening')
process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${address.port}` })}\n`)

async function answer (message: BenchMessage): Promise<BenchReply> {
  switch (message.type) {
    case 'stats': {
      if (message.gc) (globalThis as { gc?: () => void }).gc?.()
      const memory = memorySample()
      const caches = role === 'auth-core' ? null : { ...app.identities.cacheSizes() }
      return { id: message.id, type: 'stats', cpu: process.cpuUsage(), rss: memory.rss, memory, caches, sessionLookups }
    }
    case 'seed': {
      const started = Date.now()
      const { seedReaders } = await import('./seed.ts')
      const readers = await seedReaders(app.auth, message.count, message.emailPrefix, message.password)
      return { id: message.id, type: 'seeded', readers, ms: Date.now() - started }
    }
    case 'unseed': {
      const started = Date.now()
      const { unseedReaders } = await import('./seed.ts')
      await unseedReaders(app.auth, message.userIds)
      return { id: message.id, type: 'unseeded', ms: Date.now() - started }
    }
  }
}

process.on('message', (message: BenchMessage) => {
  answer(message).then((reply) => { process.send?.(reply) }, (err: unknown) => {
    process.send?.({ id: message.id, type: 'error', message: err instanceof Error ? err.stack ?? err.message : String(err) } satisfies BenchReply)
  })
})
process.on('SIGTERM', () => { app.close().then(() => pool.end()).finally(() => process.exit(0)) })
