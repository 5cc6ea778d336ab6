import t from 'tap'
import { Redis } from 'ioredis'
import { buildGateway } from '../../../gateway/app.ts'
import { postJson, startTestStack, TEST_ORIGIN } from '../../helper.ts'

// The machine's Redis (DESIGN: 127.0.0.1:6379); a database index of this test's own, flushed around it.
const REDIS_DB = 1 + Math.floor(Math.random() * 15)
const REDIS_URL = process.env.TEST_REDIS_URL ?? `redis://127.0.0.1:6379/${REDIS_DB}`

t.test('with REDIS_URL, replicas share one auth budget', async (t) => {
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 })
  await redis.connect()
  await redis.flushdb()
  t.teardown(async () => { await redis.flushdb(); await redis.quit() })

  const first = await startTestStack(t, { REDIS_URL, AUTH_RATE_LIMIT_MAX: '2' })
  const second = await buildGateway(first.config, { pool: first.pool })
  await second.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => second.close())
  const secondUrl = `http://127.0.0.1:${(second.server.address() as { port: number }).port}`

  const attempt = (base: string) => postJson(fetch, `${base}/auth/sign-in/email`, { email: 'nobody@example.com', password: 'wrong password' }, { origin: TEST_ORIGIN })
  t.equal((await attempt(first.url)).status, 401)
  t.equal((await attempt(secondUrl)).status, 401)
  const third = await attempt(first.url)
  t.equal(third.status, 429, 'the budget spent across two replicas')
  t.equal((await attempt(secondUrl)).status, 429)
  t.ok((await redis.keys('auth-gateway-rl:*')).length > 0, 'the counters live in Redis')
})
