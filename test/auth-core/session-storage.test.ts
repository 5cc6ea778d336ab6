import t from 'tap'
import { Redis } from 'ioredis'
import { postJson, startTestStack, TEST_ORIGIN, uniqueEmail } from '../helper.ts'
import { startRedisServer } from '../processes.ts'
import { until } from '../poll.ts'
import { SESSION_STORAGE_PREFIX } from '../../auth-core/session-storage.ts'

/*
 * better-auth's secondaryStorage on a Redis of the test's own: sessions are read from Redis, Postgres
 * keeps them too, and a Redis that hangs or goes away never signs anyone in or out wrongly.
 */

const PASSWORD = 'correct horse battery'

t.test('sessions in Redis, Postgres the record, through a hang and a restart', async (t) => {
  const redis = await startRedisServer(t, 5)
  const stack = await startTestStack(t, { REDIS_URL: redis.url })
  const client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: false })
  // It sees the restarts too: their reconnect errors are expected.
  client.on('error', () => {})
  t.teardown(() => { client.disconnect() })
  await client.connect()

  const signUp = async (): Promise<{ cookie: string, token: string }> => {
    const response = await postJson(fetch, `${stack.url}/auth/sign-up/email`, { email: uniqueEmail('storage'), password: PASSWORD, name: 'Storage Reader' }, { origin: TEST_ORIGIN })
    t.equal(response.status, 200, 'signed up')
    const cookie = (response.headers.getSetCookie().find((line) => line.includes('session_token=')) ?? '').split(';')[0]
    return { cookie, token: decodeURIComponent(cookie.split('=')[1]).split('.')[0] }
  }
  /** get-session straight from auth-core (the gateway's own cache out of the way): the user id or null. */
  const sessionUser = async (cookie: string): Promise<string | null> => {
    const response = await fetch(`${stack.authCoreUrl}/api/auth/get-session`, { headers: { cookie } })
    t.equal(response.status, 200, 'get-session answers 200')
    const body = await response.json() as { user?: { id: string } } | null
    return body?.user?.id ?? null
  }
  const inPostgres = async (token: string): Promise<boolean> => (await stack.pool.query('SELECT 1 FROM session WHERE token = $1', [token])).rowCount === 1

  const reader = await signUp()
  t.ok(await client.exists(SESSION_STORAGE_PREFIX + reader.token), 'the new session is in Redis')
  t.ok(await inPostgres(reader.token), 'and in Postgres')
  t.type(await sessionUser(reader.cookie), 'string', 'get-session finds it')
  // Proof that get-session reads Redis: a session taken out of Postgres only is still found.
  const other = await signUp()
  await stack.pool.query('UPDATE session SET token = token || $2 WHERE token = $1', [other.token, '-moved'])
  t.type(await sessionUser(other.cookie), 'string', 'get-session answered from Redis')
  await client.del(SESSION_STORAGE_PREFIX + other.token)
  t.equal(await sessionUser(other.cookie), null, 'and falls back to Postgres when Redis does not have it')

  await t.test('a hung Redis: sign-out still signs out, and the stale copy never comes back', async (t) => {
    const victim = await signUp()
    redis.pause()
    t.teardown(() => { redis.resume() })
    const started = Date.now()
    const signOut = await fetch(`${stack.url}/auth/sign-out`, { method: 'POST', headers: { cookie: victim.cookie, origin: TEST_ORIGIN } })
    t.equal(signOut.status, 200, `sign-out answers while Redis hangs (${Date.now() - started} ms)`)
    t.notOk(await inPostgres(victim.token), 'the session is gone from Postgres')
    t.equal(await sessionUser(victim.cookie), null, 'and get-session refuses it during the hang')
    redis.resume()
    // Redis still holds the copy the delete could not reach: it is purged before Redis is read again.
    await until('the stale copy to be purged', 10_000, async () => (await client.exists(SESSION_STORAGE_PREFIX + victim.token)) === 0 ? true : undefined)
    t.equal(await sessionUser(victim.cookie), null, 'the signed-out session stays signed out once Redis answers again')
    const fresh = await signUp()
    await until('new sessions to be cached in Redis again', 10_000, async () => {
      const probe = await signUp()
      return (await client.exists(SESSION_STORAGE_PREFIX + probe.token)) === 1 ? true : undefined
    }, 200)
    t.type(await sessionUser(fresh.cookie), 'string', 'sessions work after the hang')
  })

  await t.test('Redis gone and back on the same port: Postgres serves meanwhile', async (t) => {
    const before = await signUp()
    await redis.kill()
    const during = await signUp()
    t.type(await sessionUser(before.cookie), 'string', 'an earlier session is found in Postgres')
    t.type(await sessionUser(during.cookie), 'string', 'a session made without Redis works')
    await redis.start()
    await client.connect().catch(() => {})
    await until('Redis used again', 10_000, async () => {
      const probe = await signUp()
      return (await client.exists(SESSION_STORAGE_PREFIX + probe.token).catch(() => 0)) === 1 ? true : undefined
    }, 200)
    t.type(await sessionUser(during.cookie), 'string', 'the session made without Redis still works after')
  })
})
