import t from 'tap'
import { Redis } from 'ioredis'
import { REVOCATION_CHANNEL } from '../../../gateway/identity/revocation-bus.ts'
import { gatewayOn } from '../../helper.ts'
import { signUp } from '../../readers.ts'
import { stackWithUpstreams } from '../../upstream.ts'
import { startRedisServer } from '../../processes.ts'
import { until } from '../../poll.ts'

/*
 * The revocation broadcast as a door: anyone who can publish on the channel. A message can only make
 * a replica forget; garbage is ignored; a subscription that was down forgets everything once back.
 * Two gateways on one stack and a Redis of the test's own; sessions cached for an hour, so whatever
 * a gateway refuses, it was told to forget.
 */

const redis = await startRedisServer(t)
const { stack } = await stackWithUpstreams(t, { SESSION_CACHE_TTL: '1 hour' })
const replica = await gatewayOn(t, stack, { REDIS_URL: redis.url, SESSION_CACHE_TTL: '1 hour', APP_UPSTREAM_URL: stack.config.appUpstreamUrl ?? '' })
const publisher = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 })
publisher.on('error', () => {})
t.teardown(() => { publisher.disconnect() })
await publisher.connect()

const status = async (cookie: string): Promise<number> => (await replica.inject({ method: 'GET', url: '/api/private', headers: { cookie } })).statusCode
/** Ends the session in Postgres behind every gateway's back: only an eviction makes a gateway notice. */
const endBehindTheBack = async (userId: string): Promise<void> => { await stack.pool.query('DELETE FROM session WHERE "userId" = $1', [userId]) }

t.test('garbage on the channel is ignored; a user message evicts that user only', async (t) => {
  const reader = await signUp(stack)
  const other = await signUp(stack)
  t.equal(await status(reader.cookie), 200, 'cached')
  t.equal(await status(other.cookie), 200, 'cached')
  await endBehindTheBack(reader.userId)
  await endBehindTheBack(other.userId)
  t.equal(await status(reader.cookie), 200, 'still served from the cache: nothing told the replica')

  const garbage = ['not json', '{}', 'null', '[]', '{"origin":1,"user":"x"}', `{"origin":"x","user":${JSON.stringify(reader.userId)},"pad":"${'a'.repeat(2000)}"}`, '{"origin":"x","user":""}', '{"origin":"x","session":42}']
  for (const message of garbage) await publisher.publish(REVOCATION_CHANNEL, message)
  // A well-formed message for someone else, published after the garbage: once it is applied, the garbage was read too.
  await publisher.publish(REVOCATION_CHANNEL, JSON.stringify({ origin: 'elsewhere', user: 'no-such-user' }))
  await publisher.publish(REVOCATION_CHANNEL, JSON.stringify({ origin: 'elsewhere', user: other.userId }))
  await until('the user message to be applied', 5_000, async () => (await status(other.cookie)) === 401 ? true : undefined, 20)
  t.equal(await status(reader.cookie), 200, 'garbage (and an oversized message naming the reader) evicted nothing')
  await publisher.publish(REVOCATION_CHANNEL, JSON.stringify({ origin: 'elsewhere', user: reader.userId }))
  await until('the reader\'s eviction', 5_000, async () => (await status(reader.cookie)) === 401 ? true : undefined, 20)
  t.pass('a user message evicts that user\'s cached sessions')
})

t.test('a message cannot vouch for anyone', async (t) => {
  const reader = await signUp(stack)
  await endBehindTheBack(reader.userId)
  await publisher.publish(REVOCATION_CHANNEL, JSON.stringify({ origin: 'elsewhere', session: 'anything', user: reader.userId, identity: { userId: reader.userId } }))
  t.equal(await status(reader.cookie), 401, 'a session that ended is refused whatever the channel says')
})

t.test('the subscription lost and back: every cached session is forgotten', async (t) => {
  const reader = await signUp(stack)
  t.equal(await status(reader.cookie), 200, 'cached')
  await redis.kill()
  await endBehindTheBack(reader.userId)
  t.equal(await status(reader.cookie), 200, 'served from the cache while Redis is away')
  await redis.start()
  await until('the replica to forget its cache once subscribed again', 10_000, async () => (await status(reader.cookie)) === 401 ? true : undefined, 50)
  t.pass('refused once the subscription is back (messages may have been missed)')
})
