import { startEmbeddedPostgres } from '../../shared/db.ts'

// The benchmark's Postgres when DATABASE_URL is unset: an in-memory embedded one, in its own process.
const db = await startEmbeddedPostgres({ dataDir: null })
process.stdout.write(`${JSON.stringify({ url: db.url })}\n`)
process.on('SIGTERM', () => { db.stop().finally(() => process.exit(0)) })
