import type { FastifyInstance } from 'fastify'
import { loadConfig } from '../../shared/config.ts'
import { createPool } from '../../shared/db.ts'
import { loggerOptions } from '../../shared/log.ts'

/*
 * One service of the benchmark, in its own process, configured from the environment the driver
 * passes: `auth-core` (migrates first) or `gateway`. Answers `stats` messages with its CPU time and RSS.
 */
const role = process.argv[2]
const config = loadConfig(process.env)
if (config.databaseUrl === undefined) throw new Error('the benchmark passes DATABASE_URL')
const pool = createPool(config.databaseUrl, { max: 20 })
let app: FastifyInstance
// Each process loads only its own service, as `start:gateway` / `start:auth-core` do in production.
if (role === 'auth-core') {
  const [{ buildAuthCore }, { createAuthOptions }, { migrate }] = await Promise.all([
    import('../../auth-core/app.ts'),
    import('../../auth-core/auth.ts'),
    import('../../shared/migrate.ts')
  ])
  await migrate(pool, createAuthOptions(config, pool))
  app = await buildAuthCore(config, { pool, logger: loggerOptions(config.logLevel) })
  await app.listen({ host: '127.0.0.1', port: config.authCorePort })
} else {
  const { buildGateway } = await import('../../gateway/app.ts')
  app = await buildGateway(config, { pool, logger: loggerOptions(config.logLevel) })
  await app.listen({ host: config.host, port: config.port })
}
const address = app.server.address()
if (address === null || typeof address === 'string') throw new Error('not listening')
process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${address.port}` })}\n`)

process.on('message', (message) => {
  if (message === 'stats') process.send?.({ cpu: process.cpuUsage(), rss: process.memoryUsage().rss })
})
process.on('SIGTERM', () => { app.close().then(() => pool.end()).finally(() => process.exit(0)) })
