import { parseArgs } from 'node:util'
import { ConfigError, parseDuration } from '../../shared/config.ts'
import { createPool, poolOptions, startEmbeddedPostgres } from '../../shared/db.ts'
import { run } from '../../shared/run.ts'
import { DEFAULT_IDENTITY_KEY_OVERLAP_MS, readSigningKeys, rotateSigningKeys } from '../../shared/signing-keys.ts'

const USAGE = 'usage: npm run keys -- rotate [--overlap "1 hour"] | list'

// `npm run keys -- rotate`: a new signing key for identity (and client) tokens; the old one stays
// published for the overlap window. `list`: the published keys. Running replicas pick either up within a minute.
await run(async (config) => {
  const { positionals, values } = parseArgs({ args: process.argv.slice(2), allowPositionals: true, options: { overlap: { type: 'string' } } })
  const [command] = positionals
  if ((command !== 'rotate' && command !== 'list') || positionals.length !== 1) {
    process.stderr.write(`${USAGE}\n`)
    process.exit(2)
  }
  const overlap = values.overlap === undefined ? DEFAULT_IDENTITY_KEY_OVERLAP_MS : parseDuration(values.overlap)
  if (overlap === undefined || overlap <= 0) throw new ConfigError('--overlap', 'must be a positive duration such as "1 hour"', values.overlap)
  const embedded = config.databaseUrl === undefined ? await startEmbeddedPostgres({ dataDir: config.dataDir }) : undefined
  const pool = createPool(config.databaseUrl ?? (embedded as NonNullable<typeof embedded>).url, poolOptions(config))
  try {
    if (command === 'rotate') {
      const report = await rotateSigningKeys(pool, config.jwtSecret, overlap)
      for (const key of report.created) process.stdout.write(`created ${key.purpose} key ${key.kid}\n`)
      for (const key of report.retiring) process.stdout.write(`retiring ${key.purpose} key ${key.kid} at ${key.retiresAt.toISOString()}\n`)
      if (report.deleted > 0) process.stdout.write(`deleted ${report.deleted} key(s) past their overlap\n`)
    } else {
      for (const key of await readSigningKeys(pool, config.jwtSecret)) {
        const state = key.retiresAt === null ? 'in service' : `retiring at ${key.retiresAt.toISOString()}`
        process.stdout.write(`${key.kid}  ${key.purpose}  created ${key.createdAt.toISOString()}  ${state}${key.privateKey === null ? '  (sealed under another JWT_SECRET)' : ''}\n`)
      }
    }
  } finally {
    await pool.end()
    await embedded?.stop()
  }
  return undefined
})
