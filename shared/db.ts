import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import type { PGlite as PGliteDb } from '@electric-sql/pglite'
import type { CommonConfig } from './config.ts'
import { traceQueries, tracingQueries } from './spans.ts'
import { isDatabaseUnavailable } from './errors.ts'

export type Pool = pg.Pool
export type PoolClient = pg.PoolClient

/** Where a pool reports lost connections: a service's pino logger (`app.log`) fits. */
export interface PoolLog {
  warn: (obj: object, msg: string) => void
}

/** `DATABASE_STATEMENT_TIMEOUT`: below the gateway's 10 s deadline on auth-core, so a stuck query answers 503 from auth-core first. */
export const DEFAULT_STATEMENT_TIMEOUT_MS = 5_000
/** `DATABASE_IDLE_IN_TRANSACTION_TIMEOUT` */
export const DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_MS = 30_000

export interface PoolOptions {
  /** @default 10 */
  max?: number
  /** Milliseconds to wait for a connection before failing a query. @default 5000 */
  connectionTimeoutMillis?: number
  /**
   * Postgres `statement_timeout` of every connection, in milliseconds: a longer query is cancelled
   * (SQLSTATE 57014, answered as `database_unavailable`). `0` leaves the server's own (migrations:
   * they may wait on another replica's lock). @default DEFAULT_STATEMENT_TIMEOUT_MS
   */
  statementTimeoutMillis?: number
  /**
   * Postgres `idle_in_transaction_session_timeout`, in milliseconds: a connection left idle inside a
   * transaction is closed by the server, releasing its locks. `0` leaves the server's own.
   * @default DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_MS
   */
  idleInTransactionTimeoutMillis?: number
}

/** A service's pool settings from its configuration (`DATABASE_STATEMENT_TIMEOUT`, `DATABASE_IDLE_IN_TRANSACTION_TIMEOUT`). */
export function poolOptions (config: Pick<CommonConfig, 'databaseStatementTimeout' | 'databaseIdleInTransactionTimeout'>, options: PoolOptions = {}): PoolOptions {
  return { statementTimeoutMillis: config.databaseStatementTimeout, idleInTransactionTimeoutMillis: config.databaseIdleInTransactionTimeout, ...options }
}

const poolLogs = new WeakMap<Pool, PoolLog>()

/**
 * Sends a pool's connection-loss warnings to `log` from now on (a service's logger, once it exists);
 * until then they go to stderr as one pino-shaped line each.
 */
export function logPoolErrors (pool: Pool, log: PoolLog): void {
  poolLogs.set(pool, log)
}

const STDERR_LOG: PoolLog = {
  warn (obj, msg) {
    process.stderr.write(`${JSON.stringify({ level: 40, time: Date.now(), pid: process.pid, ...obj, msg })}\n`)
  }
}

/** What a lost connection may show in the log: its code and reason, never the connection's parameters. */
function describeConnectionError (err: Error): Record<string, unknown> {
  const code = (err as { code?: unknown }).code
  return { ...(typeof code === 'string' ? { code } : {}), reason: err.message }
}

/**
 * One pg pool; the same code path serves a real Postgres and the embedded one. A connection lost
 * (Postgres stopped, restarted or killed) fails the queries on it and is logged; it never reaches
 * the process as an uncaught `error` event. Every connection carries a `statement_timeout` and an
 * `idle_in_transaction_session_timeout` (startup parameters: no extra round trip; the embedded
 * database ignores them).
 */
export function createPool (connectionString: string, options: PoolOptions = {}): Pool {
  const pool = new pg.Pool({
    connectionString,
    max: options.max ?? 10,
    connectionTimeoutMillis: options.connectionTimeoutMillis ?? 5000,
    idleTimeoutMillis: 30_000,
    // pg sends neither when 0: the server's own setting applies.
    statement_timeout: options.statementTimeoutMillis ?? DEFAULT_STATEMENT_TIMEOUT_MS,
    idle_in_transaction_session_timeout: options.idleInTransactionTimeoutMillis ?? DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_MS
  })
  // pg-pool listens to a client only while it is idle: a checked-out one (a transaction, Kysely's
  // connection for better-auth) whose server goes away would emit `error` to no one.
  pool.on('connect', (client) => {
    client.on('error', (err) => {
      (poolLogs.get(pool) ?? STDERR_LOG).warn(describeConnectionError(err), 'a Postgres connection was lost')
    })
    // With OTEL_EXPORTER_OTLP_ENDPOINT: a span per query of a traced request (shared/tracing.ts).
    if (tracingQueries()) traceQueries(client)
  })
  // pg-pool re-emits an idle client's error here; the client's own listener above logged it.
  pool.on('error', () => {})
  return pool
}

export interface EmbeddedPostgres {
  /** A `postgres://` URL that `pg` connects to: a Unix socket, never a TCP port. */
  url: string
  /** The folder holding the socket; only the current user may enter it. */
  socketDir: string
  stop: () => Promise<void>
}

export interface EmbeddedPostgresOptions {
  /** Folder of the database files; `null` keeps them in memory (tests). */
  dataDir: string | null
}

// pg looks for `<host>/.s.PGSQL.<port>`; the port is only part of the file name.
const SOCKET_PORT = 5432
const SOCKET_NAME = `.s.PGSQL.${SOCKET_PORT}`
// sun_path holds 108 bytes on Linux and 104 on macOS, terminating NUL included.
const MAX_SOCKET_PATH_BYTES = 103

/**
 * Starts PGlite and serves it over the Postgres wire protocol, so the services reach it through `pg`
 * exactly as they reach a real server. The protocol has no authentication here, so the only door is
 * a Unix socket in a directory only the current user may enter; the data files are kept owner-only.
 * PGlite is a single session: the socket server queues queries and keeps a transaction's statements
 * together.
 */
export async function startEmbeddedPostgres (options: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const [{ PGlite }, { PGLiteSocketServer }] = await Promise.all([
    import('@electric-sql/pglite'),
    import('@electric-sql/pglite-socket')
  ])
  const socket = privateSocketDir(options.dataDir)
  const socketPath = join(socket.dir, SOCKET_NAME)
  let listening = false
  // Never unlink a socket this call did not bind: it may be another process serving the same DATA_DIR.
  const removeSocket = (): void => {
    if (socket.temporary) rmSync(socket.dir, { recursive: true, force: true })
    else if (listening) rmSync(socketPath, { force: true })
  }
  let dbPath: string | undefined
  if (options.dataDir !== null) dbPath = join(options.dataDir, 'pglite')
  // PGlite's file system hands Postgres' modes straight to the disk: its initial cluster is 0666 and
  // files it opens later follow the umask. Tighten what it wrote at start and at shutdown; the 0700
  // directories keep other users out of anything written in between.
  const seal = (): void => { if (dbPath !== undefined) ownerOnly(dbPath) }
  let db: PGliteDb | undefined
  try {
    await clearStaleSocket(socketPath)
    if (dbPath !== undefined) {
      mkdirSync(dbPath, { recursive: true, mode: 0o700 })
      chmodSync(dbPath, 0o700)
    }
    const opened = db = await PGlite.create(dbPath)
    seal()
    const server = new PGLiteSocketServer({ db: opened, path: socketPath, maxConnections: 100 })
    await server.start()
    listening = true
    return {
      url: `postgres://postgres@${encodeURIComponent(socket.dir)}:${SOCKET_PORT}/postgres?sslmode=disable`,
      socketDir: socket.dir,
      async stop () {
        try {
          await server.stop()
          await opened.close()
          seal()
        } finally {
          removeSocket()
        }
      }
    }
  } catch (err) {
    await db?.close()
    removeSocket()
    throw err
  }
}

interface SocketDir {
  dir: string
  /** Made for this run, removed on stop. */
  temporary: boolean
}

function privateSocketDir (dataDir: string | null): SocketDir {
  if (dataDir !== null) {
    const dir = join(dataDir, 'pglite-socket')
    if (Buffer.byteLength(join(dir, SOCKET_NAME)) <= MAX_SOCKET_PATH_BYTES) {
      mkdirSync(dir, { recursive: true, mode: 0o700 })
      const stat = lstatSync(dir)
      // DATA_DIR may be shared: a directory someone else planted (or a symlink) must not be trusted.
      if (!stat.isDirectory() || (process.getuid !== undefined && stat.uid !== process.getuid())) {
        throw new Error(`${dir} must be a directory owned by the current user`)
      }
      chmodSync(dir, 0o700)
      return { dir, temporary: false }
    }
    // DATA_DIR is too deep for a socket path; a fresh mkdtemp folder is just as private (0700).
  }
  const dir = mkdtempSync(join(tmpdir(), 'pglite-'))
  if (Buffer.byteLength(join(dir, SOCKET_NAME)) > MAX_SOCKET_PATH_BYTES) {
    rmSync(dir, { recursive: true, force: true })
    throw new Error(`the temporary folder ${tmpdir()} is too deep for a Unix socket path`)
  }
  return { dir, temporary: true }
}

/** A socket left by a crashed run blocks `listen`; a live one means another process owns the data. */
async function clearStaleSocket (path: string): Promise<void> {
  if (!existsSync(path)) return
  const live = await new Promise<boolean>((resolve) => {
    const probe = connect(path)
    probe.once('connect', () => { probe.destroy(); resolve(true) })
    probe.once('error', () => { resolve(false) })
  })
  if (live) throw new Error(`the embedded database is already served at ${path} by another process`)
  rmSync(path, { force: true })
}

/** Strips group and other permissions from a tree; symlinks are left alone (chmod would follow them). */
function ownerOnly (dir: string): void {
  chmodSync(dir, 0o700)
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) ownerOnly(path)
    else if (entry.isFile()) {
      const mode = lstatSync(path).mode & 0o777
      if ((mode & 0o077) !== 0) chmodSync(path, mode & 0o700)
    }
  }
}

/** Runs `work` in one transaction begun with `begin` (`BEGIN`, or with an isolation level): committed, or rolled back when it throws. */
export async function inTransaction<T> (pool: Pool, begin: string, work: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect()
  let broken: Error | undefined
  try {
    await client.query(begin)
    const result = await work(client)
    await client.query('COMMIT')
    return result
  } catch (err) {
    // A connection the server dropped is destroyed, not given back to the pool; so is one that
    // cannot roll back. Only a statement's own failure leaves it fit for the next caller.
    if (isDatabaseUnavailable(err)) broken = err as Error
    else {
      try {
        await client.query('ROLLBACK')
      } catch (rollbackError) {
        broken = rollbackError as Error
      }
    }
    throw err
  } finally {
    client.release(broken)
  }
}
