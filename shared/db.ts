import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import pg from 'pg'

export type Pool = pg.Pool
export type PoolClient = pg.PoolClient

export interface PoolOptions {
  /** @default 10 */
  max?: number
  /** Milliseconds to wait for a connection before failing a query. @default 5000 */
  connectionTimeoutMillis?: number
}

/** One pg pool; the same code path serves a real Postgres and the embedded one. */
export function createPool (connectionString: string, options: PoolOptions = {}): Pool {
  const pool = new pg.Pool({
    connectionString,
    max: options.max ?? 10,
    connectionTimeoutMillis: options.connectionTimeoutMillis ?? 5000,
    idleTimeoutMillis: 30_000
  })
  // An idle client losing its connection (database restart) must not crash the process.
  pool.on('error', () => {})
  return pool
}

export interface EmbeddedPostgres {
  /** A `postgres://` URL that `pg` connects to. */
  url: string
  stop: () => Promise<void>
}

export interface EmbeddedPostgresOptions {
  /** Folder of the database files; `null` keeps them in memory (tests). */
  dataDir: string | null
  /** Loopback port; 0 picks a free one. @default 0 */
  port?: number
}

/**
 * Starts PGlite and serves it over the Postgres wire protocol on loopback, so the services reach it
 * through `pg` exactly as they reach a real server. PGlite is a single session: the socket server
 * queues queries and keeps a transaction's statements together.
 */
export async function startEmbeddedPostgres (options: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const [{ PGlite }, { PGLiteSocketServer }] = await Promise.all([
    import('@electric-sql/pglite'),
    import('@electric-sql/pglite-socket')
  ])
  let dbPath: string | undefined
  if (options.dataDir !== null) {
    dbPath = join(options.dataDir, 'pglite')
    mkdirSync(dbPath, { recursive: true })
  }
  const db = await PGlite.create(dbPath)
  const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: options.port ?? 0, maxConnections: 100 })
  await server.start()
  const [, port] = server.getServerConn().split(':')
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres?sslmode=disable`,
    async stop () {
      await server.stop()
      await db.close()
    }
  }
}
