import t from 'tap'
import type { Test } from 'tap'
import { chmodSync, existsSync, linkSync, lstatSync, readdirSync, renameSync, statSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { createPool, startEmbeddedPostgres } from '../../shared/db.ts'
import type { EmbeddedPostgres } from '../../shared/db.ts'
import { tempDir } from '../temp-dir.ts'

const SOCKET_NAME = '.s.PGSQL.5432'

/** Every file and directory under `dir` whose mode grants anything to group or others. */
function exposed (dir: string): string[] {
  const found: string[] = []
  const walk = (path: string): void => {
    const stat = lstatSync(path)
    if ((stat.mode & 0o077) !== 0) found.push(`${relative(dir, path) || '.'} ${(stat.mode & 0o777).toString(8)}`)
    if (stat.isDirectory()) for (const name of readdirSync(path)) walk(join(path, name))
  }
  walk(dir)
  return found
}

/** The folder `pg` dials: the URL's host, which must be a socket directory, not a TCP host. */
function socketHost (url: string): string {
  return decodeURIComponent(new URL(url).hostname)
}

function assertPrivateDir (t: Test, dir: string): void {
  const stat = lstatSync(dir)
  t.ok(stat.isDirectory(), `${dir} is a directory`)
  t.equal((stat.mode & 0o777).toString(8), '700', 'the socket directory is 0700')
  t.equal(stat.uid, process.getuid?.(), 'and owned by the current user')
}

/** `SELECT 1` through a pool on the embedded database, then stops both. */
async function selectOneThenStop (embedded: EmbeddedPostgres): Promise<number> {
  const pool = createPool(embedded.url)
  try {
    return (await pool.query<{ one: number }>('SELECT 1 AS one')).rows[0].one
  } finally {
    await pool.end()
    await embedded.stop()
  }
}

/** Leaves a socket file nobody listens on in `socketDir`, as a crashed run does: bind, keep a hard link, close (which unlinks the original). */
async function leaveStaleSocket (socketDir: string): Promise<void> {
  const scratch = join(socketDir, 'scratch')
  const leftover = createServer()
  await new Promise<void>((resolve) => { leftover.listen(scratch, resolve) })
  linkSync(scratch, join(socketDir, SOCKET_NAME))
  await new Promise<void>((resolve) => { leftover.close(() => { resolve() }) })
}

// One DATA_DIR through its life, in order: the first start (Postgres' initdb, by far the costliest
// step), a restart after a crash, then a move to a deeper folder.
t.test('on a DATA_DIR', async (t) => {
  const dataDir = tempDir(t)
  const socketDir = join(dataDir, 'pglite-socket')

  await t.test('the embedded database is served on a private Unix socket and keeps its files owner-only', async (t) => {
    const embedded = await startEmbeddedPostgres({ dataDir })
    let stopped = false
    t.teardown(async () => { if (!stopped) await embedded.stop() })

    const url = new URL(embedded.url)
    t.equal(url.protocol, 'postgres:')
    const host = socketHost(embedded.url)
    t.ok(host.startsWith('/'), `pg dials a socket directory, not a TCP host (${host})`)
    t.equal(host, socketDir, 'the socket lives inside DATA_DIR')
    const socketPath = join(host, SOCKET_NAME)
    t.ok(statSync(socketPath).isSocket(), `${SOCKET_NAME} is a Unix socket`)
    assertPrivateDir(t, host)

    const pool = createPool(embedded.url)
    try {
      await pool.query('CREATE TABLE secret (id int PRIMARY KEY, password text)')
      await pool.query("INSERT INTO secret SELECT g, md5(g::text) FROM generate_series(1, 5000) g")
      await pool.query('CREATE INDEX ON secret (password)')
      await pool.query('CHECKPOINT')
      const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM secret')
      t.equal(rows[0].n, 5000, 'a query through createPool(url) works')
    } finally {
      await pool.end()
    }
    t.same(exposed(join(dataDir, 'pglite')), [], 'while running, nothing under DATA_DIR/pglite is open to group or others')

    await embedded.stop()
    stopped = true
    t.notOk(existsSync(socketPath), 'stop() removes the socket')
    t.same(exposed(join(dataDir, 'pglite')), [], 'after shutdown, still nothing open to group or others')
  })

  await t.test('a stale socket from a crashed run is replaced; a live one refuses a second server', async (t) => {
    // What a crash leaves: the socket (nobody listens on it) in a folder someone loosened.
    await leaveStaleSocket(socketDir)
    chmodSync(socketDir, 0o755)

    const again = await startEmbeddedPostgres({ dataDir })
    let stopped = false
    t.teardown(async () => { if (!stopped) await again.stop() })
    assertPrivateDir(t, socketDir)
    const reopened = createPool(again.url)
    try {
      t.equal((await reopened.query<{ one: number }>('SELECT 1 AS one')).rows[0].one, 1, 'serves after clearing the stale socket')
      const { rows } = await reopened.query<{ n: number }>('SELECT count(*)::int AS n FROM secret')
      t.equal(rows[0].n, 5000, 'the data survives a restart')
    } finally {
      await reopened.end()
    }
    await t.rejects(startEmbeddedPostgres({ dataDir }), /already served/, 'a second server on the same DATA_DIR is refused')
    t.ok(statSync(join(socketDir, SOCKET_NAME)).isSocket(), 'and the running one keeps its socket')
    await again.stop()
    stopped = true
    t.same(exposed(join(dataDir, 'pglite')), [], 'after a restart, still nothing open to group or others')
  })

  await t.test('a DATA_DIR too deep for a socket path falls back to a private temporary folder', async (t) => {
    // The same files, moved where DATA_DIR/pglite-socket/.s.PGSQL.5432 is too long for a socket path.
    const deep = join(tempDir(t), 'a-rather-long-folder-name'.repeat(4))
    renameSync(dataDir, deep)
    const embedded = await startEmbeddedPostgres({ dataDir: deep })
    const host = socketHost(embedded.url)
    t.ok(host.startsWith(tmpdir()) && !host.startsWith(deep), `the socket is not in DATA_DIR (${host})`)
    assertPrivateDir(t, host)
    t.equal(await selectOneThenStop(embedded), 1, 'a query through createPool(url) works')
    t.notOk(existsSync(host), 'stop() removes the temporary folder')
    t.same(exposed(join(deep, 'pglite')), [], 'the data files are owner-only')
  })
})

t.test('in memory (dataDir null) the socket sits in a private temporary folder removed on stop', async (t) => {
  const embedded = await startEmbeddedPostgres({ dataDir: null })
  const host = socketHost(embedded.url)
  t.ok(host.startsWith(tmpdir()), 'under the temporary folder')
  assertPrivateDir(t, host)
  t.equal(await selectOneThenStop(embedded), 1, 'a query through createPool(url) works')
  t.notOk(existsSync(host), 'stop() removes the folder and its socket')
})
