import t from 'tap'
import type { Test } from 'tap'
import { connect, createServer } from 'node:net'
import type { Socket } from 'node:net'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import pg from 'pg'
import { startStack } from '../../../gateway/cli/stack.ts'
import type { Stack } from '../../../gateway/cli/stack.ts'
import { SERVER_DATABASE_URL, testConfig, testDatabase } from '../../helper.ts'
import type { Teardown } from '../../helper.ts'

interface LogLine {
  level: number
  msg: string
  dependency?: string
  err?: { message?: string }
}

/** A TCP hop in front of Postgres (or the embedded one's socket): closing it leaves the stack's database on a closed port. */
async function forwarder (t: Teardown, target: string): Promise<{ url: string, close: () => Promise<void> }> {
  const url = new URL(target)
  const port = Number(url.port === '' ? 5432 : url.port)
  // The embedded database listens on a Unix socket, named as pg reads it: the directory as the host.
  const socketDir = url.hostname.startsWith('%2F') ? decodeURIComponent(url.hostname) : null
  const sockets = new Set<Socket>()
  const server = createServer((client) => {
    const upstream = socketDir === null ? connect(port, url.hostname) : connect(join(socketDir, `.s.PGSQL.${port}`))
    for (const socket of [client, upstream]) {
      sockets.add(socket)
      socket.on('error', () => { client.destroy(); upstream.destroy() })
      socket.on('close', () => { sockets.delete(socket); client.destroy(); upstream.destroy() })
    }
    client.pipe(upstream).pipe(client)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  const close = async (): Promise<void> => {
    const closed = new Promise<void>((resolve) => server.close(() => { resolve() }))
    for (const socket of sockets) socket.destroy()
    await closed
  }
  t.teardown(() => server.listening ? close() : undefined)
  const forwarded = new URL(target)
  forwarded.hostname = '127.0.0.1'
  forwarded.port = String(address.port)
  return { url: forwarded.toString(), close }
}

/** The whole stack on the given database, its warnings kept. */
async function stackOn (t: Teardown, databaseUrl: string): Promise<{ stack: Stack, logs: LogLine[] }> {
  const logs: LogLine[] = []
  const stream = new Writable({
    write (chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') logs.push(JSON.parse(line) as LogLine)
      callback()
    }
  })
  const stack = await startStack(testConfig(t, { DATABASE_URL: databaseUrl }), { logger: { level: 'warn', stream } })
  t.teardown(() => stack.close())
  return { stack, logs }
}

async function assertNotReady (t: Test, stack: Stack, logs: LogLine[], postgres: 'ok' | 'down', authCore: 'ok' | 'down', named: RegExp): Promise<void> {
  logs.length = 0
  const response = await stack.gateway.inject({ method: 'GET', url: '/ready' })
  t.equal(response.statusCode, 503)
  const body = response.json() as { error: string, message: string, status: string, checks: Record<string, string> }
  // The schema cannot be inspected without Postgres.
  t.same(body.checks, { postgres, schema: postgres === 'down' ? 'unknown' : 'ok', authCore }, 'ok or down per dependency')
  t.equal(body.status, 'not_ready')
  t.equal(body.error, 'not_ready')
  t.match(body.message, named, 'the message names what is down')
  t.same(Object.keys(body).sort(), ['checks', 'error', 'message', 'requestId', 'status'])
  t.notMatch(response.body, /ECONN|127\.0\.0\.1|does not exist|terminat|timed out|answered|auth_gateway_test/, 'no internal text in the body')
  const warned = logs.filter((line) => line.level === 40 && line.msg === 'readiness check failed')
  const down = Object.entries({ postgres, authCore }).filter(([, state]) => state === 'down').map(([name]) => name)
  // auth-core (same log here) logs its own readiness failure too: each one down once or more.
  t.same([...new Set(warned.map((line) => line.dependency))].sort(), down.sort(), 'each one down is logged at warn')
  t.ok(warned.every((line) => typeof line.err?.message === 'string' && line.err.message !== ''), 'with the reason')
}

t.test('/ready: ok or down per dependency, the reasons in the log only', async (t) => {
  t.test('Postgres on a closed port, then auth-core down too', async (t) => {
    const database = await testDatabase(t)
    const hop = await forwarder(t, database)
    const { stack, logs } = await stackOn(t, hop.url)
    const ready = await stack.gateway.inject({ method: 'GET', url: '/ready' })
    t.equal(ready.statusCode, 200)
    t.same(ready.json(), { status: 'ready', checks: { postgres: 'ok', schema: 'ok', authCore: 'ok' } })

    await hop.close()
    await assertNotReady(t, stack, logs, 'down', 'ok', /^Not ready: postgres is not answering$/)
    await stack.authCore.close()
    await assertNotReady(t, stack, logs, 'down', 'down', /^Not ready: postgres and authCore are not answering$/)
  })

  t.test('auth-core down, then the database dropped', { skip: SERVER_DATABASE_URL === undefined && 'the embedded database answers to any name' }, async (t) => {
    const database = await testDatabase(t)
    const { stack, logs } = await stackOn(t, database)
    await stack.authCore.close()
    await assertNotReady(t, stack, logs, 'ok', 'down', /^Not ready: authCore is not answering$/)

    const admin = new pg.Client({ connectionString: SERVER_DATABASE_URL })
    await admin.connect()
    await admin.query(`DROP DATABASE ${new URL(database).pathname.slice(1)} WITH (FORCE)`)
    await admin.end()
    await assertNotReady(t, stack, logs, 'down', 'down', /^Not ready: postgres and authCore are not answering$/)
    t.ok(logs.some((line) => line.dependency === 'postgres' && /does not exist/.test(line.err?.message ?? '')), 'the log says the database does not exist')
  })
})
