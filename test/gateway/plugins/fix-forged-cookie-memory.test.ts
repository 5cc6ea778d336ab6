import t from 'tap'
import { randomBytes } from 'node:crypto'
import { Pool } from 'undici'
import { TtlCache } from '../../../gateway/ttl-cache.ts'
import { startTestStack } from '../../helper.ts'
import { signUp } from '../../readers.ts'

/*
 * Finding: each distinct forged `better-auth.session_token` was cached as anonymous under the whole
 * cookie string; 22,000 of them took the gateway from 97 MB to 330–408 MB and pushed real sessions out
 * of the cache. Expired entries were never cleared.
 */

t.test('expired entries are swept, fresh ones stay', async (t) => {
  const cache = new TtlCache<string, number>(1000)
  cache.set('old', 1, 10)
  cache.set('fresh', 2)
  cache.sweep(Date.now() + 500)
  t.equal(cache.size, 1, 'the expired entry is gone without being read')
  t.equal(cache.get('fresh'), 2)
  cache.sweep(Date.now() + 5000)
  t.equal(cache.size, 0)
})

t.test('a flood of distinct forged cookies neither grows the caches nor evicts a real session', async (t) => {
  const stack = await startTestStack(t, { SESSION_CACHE_TTL: '10 minutes', RATE_LIMIT_MAX: '100000' })
  const reader = await signUp(stack)
  const profile = await fetch(`${stack.url}/api/v1/profile`, { headers: { cookie: reader.cookie } })
  t.equal(profile.status, 200, 'the real session is looked up and cached')

  // More forged cookies than the unknown-cookie cache holds (1,000), each 4 KB (under the header cap).
  // Enough to prove the bug gone: had a forged cookie entered the session cache (where 10,000 of them
  // would push real sessions out), the session count below would show it after the first.
  const FORGED = 1_500
  const pool = new Pool(stack.url, { connections: 16 })
  t.teardown(() => pool.close())
  let sent = 0
  let refused = 0
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (sent < FORGED) {
      sent++
      const { statusCode, body } = await pool.request({ method: 'GET', path: '/api/v1/profile', headers: { cookie: `better-auth.session_token=${randomBytes(3000).toString('base64url')}.sig` } })
      await body.dump()
      if (statusCode === 401) refused++
    }
  }))
  t.equal(refused, FORGED, 'every forged cookie is refused')

  const sizes = stack.gateway.identities.cacheSizes()
  t.ok(sizes.unknownCookies <= 1000, `unknown cookies are remembered in at most 1000 entries (${sizes.unknownCookies})`)
  t.ok(sizes.sessions <= 1, `the session cache holds only real sessions (${sizes.sessions})`)

  // With auth-core gone, only the cache can still vouch for the reader.
  await stack.authCore.close()
  const cached = await fetch(`${stack.url}/api/v1/profile`, { headers: { cookie: reader.cookie } })
  t.equal(cached.status, 200, 'the real session is still cached after the flood')
})
