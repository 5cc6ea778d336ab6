import t from 'tap'
import { once } from 'node:events'
import { createServer } from 'node:net'
import type { AddressInfo, Socket } from 'node:net'
import { Writable } from 'node:stream'
import { Redis } from 'ioredis'
import { buildGateway } from '../../../gateway/app.ts'
import type { Stack } from '../../../gateway/cli/stack.ts'
import { postJson, startTestStack, TEST_ORIGIN } from '../../helper.ts'
import type { Teardown } from '../../helper.ts'
import { freePort } from '../../ports.ts'
import { until } from '../../poll.ts'
import { startRedisServer } from '../../processes.ts'

// Every fault is played on a Redis of this test's own (never the machine's 127.0.0.1:6379): its own
// port, no persistence, killed in teardown, so nothing it wrote outlives it.
const REDIS_DB = 1 + Math.floor(Math.random() * 15)
const AUTH_MAX = 3
// The stage's namespace plus the budget's key; the gateway sees the test's fetches from 127.0.0.1.
const GENERAL_KEY = 'auth-gateway-rl:all:127.0.0.1'
const AUTH_KEY = 'auth-gateway-rl:auth:127.0.0.1'
// The Redis deadline is the behaviour under test: with a hung Redis a request waits at most one
// command timeout (250 ms), so 2 s is generous for a shared CI machine and far below the hang.
const DEGRADED_ANSWER_MS = 2000
const WAIT_MS = 20_000


/** Polls `check` until it holds; fails with `what` after `ms`. */
/** Polls `check` until it holds; fails with `what` after `ms`. */
async function eventually (what: string, check: () => Promise<boolean>, ms = WAIT_MS): Promise<void> {
  await until(what, ms, async () => (await check()) ? true : undefined)
}

interface TestRedis {
  url: string
  /** A plain client on the test's database, for reading what the gateway wrote. */
  client: Redis
  pause: () => void
  resume: () => void
  kill: () => Promise<void>
}

async function startRedis (t: Teardown, port: number): Promise<TestRedis> {
  const server = await startRedisServer(t, REDIS_DB, port)
  const client = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 1 })
  await client.connect()
  t.teardown(() => { client.disconnect() })
  return {
    url: server.url,
    client,
    pause: server.pause,
    resume: server.resume,
    kill: async () => {
      client.disconnect()
      await server.kill()
    }
  }
}

const signIn = (base: string): Promise<Response> => postJson(fetch, `${base}/auth/sign-in/email`, { email: 'nobody@example.com', password: 'wrong password' }, { origin: TEST_ORIGIN })

async function signInStatuses (base: string, count: number): Promise<number[]> {
  const statuses: number[] = []
  for (let i = 0; i < count; i++) statuses.push((await signIn(base)).status)
  return statuses
}

/** Whether the gateway counts in this Redis right now: a request it takes shows up as a fresh key. */
async function countsIn (redis: TestRedis, base: string): Promise<boolean> {
  await redis.client.del(GENERAL_KEY)
  const answer = await fetch(`${base}/auth/get-session`)
  if (answer.status !== 200) return false
  return await redis.client.get(GENERAL_KEY) === '1'
}

async function timed (request: () => Promise<Response>): Promise<{ status: number, ms: number }> {
  const started = Date.now()
  const answer = await request()
  await answer.arrayBuffer()
  return { status: answer.status, ms: Date.now() - started }
}

async function stackOn (t: Teardown, redisUrl: string): Promise<Stack> {
  return startTestStack(t, { REDIS_URL: redisUrl, AUTH_RATE_LIMIT_MAX: String(AUTH_MAX) })
}

t.test('no Redis at startup: the gateway starts, serves, and still limits sign-ins per replica', async (t) => {
  const stack = await stackOn(t, `redis://127.0.0.1:${await freePort()}/${REDIS_DB}`)
  t.equal((await fetch(`${stack.url}/health`)).status, 200)
  t.same(await signInStatuses(stack.url, AUTH_MAX + 1), [...Array<number>(AUTH_MAX).fill(401), 429], 'the sign-in limit holds on in-process counters')
})

t.test('a Redis that comes up later is picked up: the counters move to it', async (t) => {
  const port = await freePort()
  const stack = await stackOn(t, `redis://127.0.0.1:${port}/${REDIS_DB}`)
  t.equal((await fetch(`${stack.url}/auth/get-session`)).status, 200, 'served before Redis exists')
  const redis = await startRedis(t, port)
  await eventually('the gateway to count in the late Redis', () => countsIn(redis, stack.url))
  t.equal((await signIn(stack.url)).status, 401)
  t.equal(await redis.client.get(AUTH_KEY), '1', 'the sign-in was counted in Redis')

  const before = await redis.client.get(GENERAL_KEY)
  for (let i = 0; i < 3; i++) t.equal((await fetch(`${stack.url}/health`)).status, 200)
  t.equal(await redis.client.get(GENERAL_KEY), before, '/health never touches Redis')
})

t.test('a hung Redis (SIGSTOP): answers stay fast, the sign-in limit holds, and SIGCONT brings the shared counters back', async (t) => {
  const redis = await startRedis(t, await freePort())
  const stack = await stackOn(t, redis.url)
  await eventually('the gateway to count in Redis', () => countsIn(redis, stack.url))
  const rag = (): Promise<Response> => postJson(fetch, `${stack.url}/api/v1/query`, { query: 'hello' }, { origin: TEST_ORIGIN })
  const ragStatus = (await timed(rag)).status

  redis.pause()
  for (const [name, request, status] of [
    ['/health', () => fetch(`${stack.url}/health`), 200],
    ['/auth/get-session', () => fetch(`${stack.url}/auth/get-session`), 200],
    ['POST /api/v1/query', rag, ragStatus]
  ] as const) {
    for (let i = 0; i < 2; i++) {
      const answer = await timed(request)
      t.equal(answer.status, status, `${name} answers during the hang`)
      t.ok(answer.ms < DEGRADED_ANSWER_MS, `${name} within ${DEGRADED_ANSWER_MS} ms (${answer.ms} ms)`)
    }
  }
  t.same(await signInStatuses(stack.url, AUTH_MAX + 1), [...Array<number>(AUTH_MAX).fill(401), 429], 'the sign-in limit falls back to in-process counters')

  redis.resume()
  await eventually('the gateway to count in Redis again', () => countsIn(redis, stack.url))
  await redis.client.del(AUTH_KEY)
  t.equal((await signIn(stack.url)).status, 401, 'the shared count decides again')
  t.equal(await redis.client.get(AUTH_KEY), '1')
})

t.test('Redis killed mid-run: requests are served, limits hold, and a restart on the same port is picked up', async (t) => {
  const port = await freePort()
  const first = await startRedis(t, port)
  const stack = await stackOn(t, first.url)
  await eventually('the gateway to count in Redis', () => countsIn(first, stack.url))
  t.equal((await signIn(stack.url)).status, 401, 'one sign-in counted while Redis is up')

  await first.kill()
  t.equal((await fetch(`${stack.url}/health`)).status, 200)
  t.equal((await fetch(`${stack.url}/auth/get-session`)).status, 200)
  t.same(await signInStatuses(stack.url, AUTH_MAX), [...Array<number>(AUTH_MAX - 1).fill(401), 429], 'the replica also counted what it sent to Redis: the outage does not reset the budget')

  const second = await startRedis(t, port)
  await eventually('the gateway to count in the restarted Redis', () => countsIn(second, stack.url))
  t.equal((await signIn(stack.url)).status, 401, 'the restarted, empty Redis decides again')
})

t.test('an outage is logged once at warn however often the reconnect fails, and the recovery at info', async (t) => {
  const stack = await startTestStack(t)
  // Accepts and drops every connection: each reconnect attempt is seen, and fails.
  const attempts: Socket[] = []
  const dropper = createServer((socket) => { attempts.push(socket); socket.destroy() })
  dropper.listen(0, '127.0.0.1')
  await once(dropper, 'listening')
  const { port } = dropper.address() as AddressInfo

  const lines: Array<{ level: number, msg: string }> = []
  const stream = new Writable({
    write (chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString().split('\n')) if (line !== '') lines.push(JSON.parse(line) as { level: number, msg: string })
      callback()
    }
  })
  const gateway = await buildGateway(Object.freeze({ ...stack.config, redisUrl: `redis://127.0.0.1:${port}/${REDIS_DB}` }), { pool: stack.pool, logger: { level: 'info', stream } })
  t.teardown(() => gateway.close())
  await gateway.ready()

  await eventually('three failed connection attempts', async () => attempts.length >= 3)
  // The rate limits' own lines (the revocation broadcast logs its outage apart: test/gateway/identity/revocation-bus.test.ts).
  const redisLines = (): Array<{ level: number, msg: string }> => lines.filter((line) => /redis/i.test(line.msg) && /rate limits/.test(line.msg))
  t.same(redisLines().filter((line) => line.level >= 40).map((line) => line.level), [40], `one warning for ${attempts.length} failed attempts`)

  dropper.close()
  await once(dropper, 'close')
  await startRedis(t, port)
  await eventually('the recovery to be logged', async () => redisLines().some((line) => line.level === 30))
  t.same(redisLines().map((line) => line.level), [40, 30], 'down once, up once')
  t.equal((await gateway.inject({ method: 'GET', url: '/health' })).statusCode, 200)
})
