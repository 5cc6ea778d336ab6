import { parseArgs } from 'node:util'
import { createPool, poolOptions, startEmbeddedPostgres } from '../../shared/db.ts'
import { run } from '../../shared/run.ts'
import { list, setRole } from './admin-commands.ts'
import { ROLE } from '../../shared/roles.ts'

const USAGE = 'usage: npm run admin -- set-role EMAIL ROLE | list'

// `npm run admin -- set-role EMAIL ROLE`, `npm run admin -- list` (users with a role other than `user`),
// on `DATABASE_URL` or the embedded database of `npm start`.
await run(async (config) => {
  const { positionals } = parseArgs({ args: process.argv.slice(2), allowPositionals: true })
  const [command, ...rest] = positionals
  const valid = (command === 'set-role' && rest.length === 2 && ROLE.test(rest[1])) || (command === 'list' && rest.length === 0)
  if (!valid) {
    process.stderr.write(`${USAGE}\n  ROLE: lower-case letters, digits, - and _, several separated by commas (e.g. admin)\n`)
    process.exit(2)
  }
  const embedded = config.databaseUrl === undefined ? await startEmbeddedPostgres({ dataDir: config.dataDir }) : undefined
  const pool = createPool(config.databaseUrl ?? (embedded as NonNullable<typeof embedded>).url, poolOptions(config))
  try {
    if (command === 'set-role') await setRole(config, pool, rest[0], rest[1])
    else await list(pool)
  } finally {
    await pool.end()
    await embedded?.stop()
  }
  return undefined
})
