import type { FastifyInstance, FastifyServerOptions } from 'fastify'
import { buildAuthCore } from '../../auth-core/app.ts'
import { createAuthOptions } from '../../auth-core/auth.ts'
import type { Config } from '../../shared/config.ts'
import { createPool, poolOptions, startEmbeddedPostgres } from '../../shared/db.ts'
import type { EmbeddedPostgres, Pool } from '../../shared/db.ts'
import { migrate } from '../../shared/migrate.ts'
import { buildGateway } from '../app.ts'
import { startMetrics } from '../../shared/metrics.ts'
import { startTracing } from '../../shared/tracing.ts'
import type { ProcessTracing } from '../../shared/tracing.ts'

export interface Stack {
  /** The gateway's listening URL. */
  url: string
  authCoreUrl: string
  databaseUrl: string
  /** The configuration the gateway runs with (`authCoreUrl` is the port auth-core really got). */
  config: Readonly<Config>
  pool: Pool
  gateway: FastifyInstance
  authCore: FastifyInstance
  /** Where both services' metrics are served (`METRICS_PORT`), if they are. */
  metricsUrl: string | undefined
  /** Both services' tracing (`OTEL_EXPORTER_OTLP_ENDPOINT`), if on. */
  tracing: ProcessTracing | undefined
  /** Stops the gateway (draining in-flight requests), then auth-core, then the database. */
  close: () => Promise<void>
}

export interface StackOptions {
  logger?: FastifyServerOptions['logger']
}

function listeningUrl (app: FastifyInstance): string {
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('server is not listening on TCP')
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
  return `http://${host}:${address.port}`
}

/**
 * The whole stack in one process: the embedded Postgres when `DATABASE_URL` is unset, migrations,
 * auth-core on loopback, then the gateway. What `npm start` runs, and what end-to-end tests start.
 */
export async function startStack (config: Readonly<Config>, options: StackOptions = {}): Promise<Stack> {
  const opened: Array<() => Promise<void>> = []
  const close = async (): Promise<void> => {
    for (const step of opened.splice(0).reverse()) await step()
  }
  try {
    let embedded: EmbeddedPostgres | undefined
    let databaseUrl = config.databaseUrl
    if (databaseUrl === undefined) {
      embedded = await startEmbeddedPostgres({ dataDir: config.dataDir })
      const stop = embedded.stop
      opened.push(stop)
      databaseUrl = embedded.url
    }
    // Migrations on a pool of their own, without a statement timeout (they may wait for another replica's lock).
    const migrations = createPool(databaseUrl, poolOptions(config, { statementTimeoutMillis: 0 }))
    try {
      await migrate(migrations, createAuthOptions(config, migrations))
    } finally {
      await migrations.end()
    }
    const pool = createPool(databaseUrl, poolOptions(config))
    opened.push(async () => { await pool.end() })

    // One process, so one metrics port for both services (told apart by their `service` label).
    const metrics = startMetrics(config)
    // Started before the pool's first connection, whose queries it traces.
    const tracing = startTracing(config, 'gateway')
    if (tracing !== undefined) opened.push(async () => { await tracing.shutdown() })
    const authCore = await buildAuthCore(config, { pool, logger: options.logger, metrics, tracing })
    opened.push(async () => { await authCore.close() })
    await authCore.listen({ host: '127.0.0.1', port: config.authCorePort })
    const authCoreUrl = listeningUrl(authCore)

    const gatewayConfig: Readonly<Config> = Object.freeze({ ...config, authCoreUrl })
    const gateway = await buildGateway(gatewayConfig, { pool, logger: options.logger, metrics, tracing })
    opened.push(async () => { await gateway.close() })
    await gateway.listen({ host: config.host, port: config.port })
    let metricsUrl: string | undefined
    if (metrics !== undefined) {
      metricsUrl = await metrics.listen()
      opened.push(async () => { await metrics.close() })
    }

    return { url: listeningUrl(gateway), authCoreUrl, databaseUrl, config: gatewayConfig, pool, gateway, authCore, metricsUrl, tracing, close }
  } catch (err) {
    await close()
    throw err
  }
}
