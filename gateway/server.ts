import { createPool, logPoolErrors, poolOptions } from '../shared/db.ts'
import { ConfigError } from '../shared/config.ts'
import { loggerOptions } from '../shared/log.ts'
import { buildGateway } from './app.ts'
import { run } from '../shared/run.ts'
import { startMetrics } from '../shared/metrics.ts'
import { startTracing } from '../shared/tracing.ts'

// `npm run start:gateway`: the gateway alone, against a real Postgres and a running auth-core.
await run('gateway', async (config) => {
  if (config.databaseUrl === undefined) throw new ConfigError('DATABASE_URL', 'is required to start the gateway alone (npm start runs the embedded database)')
  const pool = createPool(config.databaseUrl, poolOptions(config))
  const metrics = startMetrics(config)
  const tracing = startTracing(config, 'gateway')
  const app = await buildGateway(config, { pool, logger: loggerOptions(config.logLevel), metrics, tracing })
  // Alone, the gateway owns its pool (in `npm start` auth-core's logger reports the shared one).
  logPoolErrors(pool, app.log)
  app.addHook('onClose', async () => { await pool.end() })
  await app.listen({ host: config.host, port: config.port })
  if (metrics !== undefined) app.log.info({ url: await metrics.listen() }, 'metrics served')
  return async () => {
    await app.close()
    await metrics?.close()
    await tracing?.shutdown()
  }
})
