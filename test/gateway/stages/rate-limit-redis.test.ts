import t from 'tap'
import { randomInt } from 'node:crypto'
import { Redis } from 'ioredis'
import { canonicalAddress } from '../../../gateway/client-address.ts'
import { gatewayOn, listenOn, postJson, startTestStack, TEST_ORIGIN } from '../../helper.ts'

// The machine's Redis (DESIGN: 127.0.0.1:6379), shared with whoever else uses it: this test touches
// only the keys it wrote, never a whole database. The stage's key namespace (`NAMESPACE` in
// gateway/stages/rate-limit.ts) is fixed, so the keys are made this run's own by the client address:
// behind TRUST_PROXY each run signs in from an address of the documentation range of its own.
const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
const NAMESPACE = 'auth-gateway-rl:'
const hex = (): string => randomInt(0x1000, 0x10000).toString(16)
const CLIENT = canonicalAddress(`2001:db8:${hex()}:${hex()}:${hex()}:${hex()}:${hex()}:${hex()}`) ?? ''

/** Every key under the namespace for `client`, by SCAN (never KEYS on a shared server). */
async function keysOf (redis: Redis, client: string): Promise<string[]> {
  const found: string[] = []
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${NAMESPACE}*:${client}`, 'COUNT', 1000)
    cursor = next
    found.push(...keys)
  } while (cursor !== '0')
  return found.sort()
}

t.test('with REDIS_URL, replicas share one auth budget', async (t) => {
  t.ok(CLIENT.startsWith('2001:db8:'), `this run's client address: ${CLIENT}`)
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 })
  await redis.connect()
  t.teardown(async () => {
    // Only the keys of this run's address: nobody else's counters are touched.
    const written = await keysOf(redis, CLIENT)
    if (written.length > 0) await redis.del(...written)
    await redis.quit()
  })
  t.same(await keysOf(redis, CLIENT), [], 'no key of this address before the run')

  const env = { REDIS_URL, AUTH_RATE_LIMIT_MAX: '2', TRUST_PROXY: '127.0.0.1' }
  const first = await startTestStack(t, env)
  const secondUrl = await listenOn(await gatewayOn(t, first, env))

  const attempt = (base: string) => postJson(fetch, `${base}/auth/sign-in/email`, { email: 'nobody@example.com', password: 'wrong password' }, { origin: TEST_ORIGIN, 'x-forwarded-for': CLIENT })
  t.equal((await attempt(first.url)).status, 401)
  t.equal((await attempt(secondUrl)).status, 401)
  const third = await attempt(first.url)
  t.equal(third.status, 429, 'the budget spent across two replicas')
  t.equal((await attempt(secondUrl)).status, 429)
  t.same(await keysOf(redis, CLIENT), [`${NAMESPACE}all:${CLIENT}`, `${NAMESPACE}auth:${CLIENT}`], 'the counters live in Redis, under the namespace and this run\'s address')
  t.equal(await redis.get(`${NAMESPACE}auth:${CLIENT}`), '4', 'four sign-ins counted in one shared counter')
})
