import { createAuthOptions } from '../../auth-core/auth.ts'
import { createPool, poolOptions, startEmbeddedPostgres } from '../../shared/db.ts'
import { migrate } from '../../shared/migrate.ts'
import { run } from '../../shared/run.ts'

// `npm run migrate`: every table, better-auth's and the gateway's; safe to run again and concurrently.
await run(async (config) => {
  const embedded = config.databaseUrl === undefined ? await startEmbeddedPostgres({ dataDir: config.dataDir }) : undefined
  // No statement timeout: a migration may build an index on a large table, or wait for another replica's lock.
  const pool = createPool(config.databaseUrl ?? (embedded as NonNullable<typeof embedded>).url, poolOptions(config, { statementTimeoutMillis: 0 }))
  try {
    const report = await migrate(pool, createAuthOptions(config, pool))
    const created = report.betterAuth.created.length + report.betterAuth.altered.length
    process.stdout.write(`migrations done: better-auth ${created === 0 ? 'up to date' : `${created} table change(s)`}, gateway ${report.gateway.length === 0 ? 'up to date' : `applied ${report.gateway.join(', ')}`}\n`)
  } finally {
    await pool.end()
    await embedded?.stop()
  }
  return undefined
})
