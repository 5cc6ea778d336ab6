import { ConfigError } from '../shared/config.ts'
import { createPool, poolOptions } from '../shared/db.ts'
import { loggerOptions } from '../shared/log.ts'
import { run } from '../shared/run.ts'
import { startMetrics } from '../shared/metrics.ts'
import { startTracing } from '../shared/tracing.ts'
import { buildAuthCore } from './app.ts'

// `npm run start:auth-core`: the internal auth core alone, on 127.0.0.1:AUTH_CORE_PORT.
await run('auth-core', async (config) => {
  if (config.databaseUrl === undefined) throw new ConfigError('DATABASE_URL', 'is required to start auth-core alone (npm start runs the embedded database)')
  const pool = createPool(config.databaseUrl, poolOptions(config))
  const metrics = startMetrics(config)
  const tracing = startTracing(config, 'auth-core')
  const app = await buildAuthCore(config, { pool, logger: loggerOptions(config.logLevel), metrics, tracing })
  app.addHook('onClose', async () => { await pool.end() })
  await app.listen({ host: config.authCoreHost, port: config.authCorePort })
  if (metrics !== undefined) app.log.info({ url: await metrics.listen() }, 'metrics served')
  return async () => {
    await app.close()
    await metrics?.close()
    await tracing?.shutdown()
  }
})
