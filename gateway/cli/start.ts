import { loggerOptions } from '../../shared/log.ts'
import { startStack } from './stack.ts'
import { run } from '../../shared/run.ts'

// `npm start`: embedded Postgres when DATABASE_URL is unset, migrations, auth-core and gateway.
await run(async (config) => {
  const stack = await startStack(config, { logger: loggerOptions(config.logLevel) })
  const database = config.databaseUrl === undefined ? `embedded Postgres in ${config.dataDir}` : 'DATABASE_URL'
  // One URL: the one browsers, the docs site and the smoke checker use (PUBLIC_URL); where the
  // process listens goes to the log.
  process.stdout.write(`\nauth-gateway ready on ${config.publicUrl} (auth at ${config.publicUrl}/auth, ${database})\n\n`)
  return stack.close
})
