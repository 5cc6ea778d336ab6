import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { Agent } from 'undici'
import { JWT_TEST_SECRET, SECRET, SERVER_DATABASE_URL, TEST_ORIGIN, testDatabase, uniqueEmail } from '../helper.ts'
import type { Teardown } from '../helper.ts'
import { lastBearer, recordingUpstream } from '../upstream.ts'
import { freePort } from '../ports.ts'
import { until } from '../poll.ts'
import { haproxyInstalled, startHaproxy } from '../haproxy.ts'
import { call, describe, postgresBin, runScript, spawnService, startCluster, startRedisServer } from '../processes.ts'
import type { Answer, Service } from '../processes.ts'

/*
 * Two gateway replicas and auth-core as their own processes, behind HAProxy, sharing a Redis this
 * test starts (and kills) itself: every user-visible rule holds as for one gateway — revocations
 * reach the other replica at once, sign-in limits are shared, Redis may go away, and replicas may
 * be restarted or killed under traffic.
 */

const PASSWORD = 'correct horse battery'
// HAProxy connects to the replicas from this address; the gateways trust it, and only it.
const PROXY_SOURCE = '127.0.0.3'
// Where the test's "browser" connects from, so the recorded client address proves X-Forwarded-For was read.
const BROWSER_ADDRESS = '127.0.0.2'
const USER_AGENT = 'replica-test-browser/1.0'
// Long enough that only the broadcast can explain a refusal on the other replica.
const SESSION_CACHE_TTL = '60 seconds'
const REFUSED_WITHIN_MS = 1_000
const AUTH_MAX = 6

/** A fetch from one loopback address (the gateways key limits and sessions by client address). */
function fetchFrom (t: Teardown, address: string): typeof fetch {
  const dispatcher = new Agent({ localAddress: address })
  t.teardown(() => dispatcher.close())
  return (async (input: string | URL | Request, init: RequestInit = {}) => fetch(input, { ...init, dispatcher } as RequestInit)) as typeof fetch
}

interface Reader {
  userId: string
  email: string
  cookie: string
  /** The reader's own fetch, from an address of its own: its sign-ins spend its own budget. */
  f: typeof fetch
}

const json = (body: unknown): RequestInit => ({ method: 'POST', headers: { 'content-type': 'application/json', origin: TEST_ORIGIN }, body: JSON.stringify(body) })

function sessionCookie (response: Response): string {
  const line = response.headers.getSetCookie().find((cookie) => cookie.includes('session_token='))
  if (line === undefined) throw new Error(`no session cookie in the answer (${response.status})`)
  return line.split(';')[0]
}

const bin = postgresBin()
const missing = !haproxyInstalled() ? 'haproxy is missing: install it to run the replica tests (as root: apt-get install -y haproxy)' : SERVER_DATABASE_URL === undefined && bin === null ? 'no Postgres server and no initdb' : false

t.test('two gateway replicas behind HAProxy behave as one gateway', { skip: missing }, async (t) => {
  const databaseUrl = SERVER_DATABASE_URL !== undefined ? await testDatabase(t) : (await startCluster(t, bin as string)).url
  const redis = await startRedisServer(t, 3)
  const upstream = await recordingUpstream(t)
  const [authCorePort, portA, portB] = [await freePort(), await freePort(), await freePort()]
  const dataDir = mkdtempSync('/tmp/replicas-data-')
  t.teardown(() => { rmSync(dataDir, { recursive: true, force: true }) })
  const env: Record<string, string> = {
    DATABASE_URL: databaseUrl,
    DATA_DIR: dataDir,
    REDIS_URL: redis.url,
    AUTH_CORE_PORT: String(authCorePort),
    AUTH_CORE_URL: `http://127.0.0.1:${authCorePort}`,
    BETTER_AUTH_SECRET: SECRET,
    JWT_SECRET: JWT_TEST_SECRET,
    ALLOWED_ORIGINS: TEST_ORIGIN,
    // One public URL for every service, as behind any load balancer (else each replica's would be its own port's).
    PUBLIC_URL: 'http://localhost:8000',
    RAG_UPSTREAM_URL: upstream.url,
    APP_UPSTREAM_URL: upstream.url,
    SESSION_CACHE_TTL,
    TRUST_PROXY: PROXY_SOURCE,
    LOG_LEVEL: 'info',
    AUTH_RATE_LIMIT_MAX: String(AUTH_MAX),
    RATE_LIMIT_MAX: '100000',
    RAG_RATE_LIMIT_ANON: '100000',
    RAG_RATE_LIMIT_USER: '100000'
  }
  await runScript('gateway/cli/migrate.ts', env)
  const authCore = spawnService(t, 'auth-core', 'auth-core/server.ts', env, env.AUTH_CORE_URL)
  const replica = (name: string, port: number): Service => spawnService(t, name, 'gateway/server.ts', { ...env, PORT: String(port) }, `http://127.0.0.1:${port}`)
  const replicas = { A: replica('A', portA), B: replica('B', portB) }
  const healthy = async (service: Service): Promise<void> => {
    // Waited on, not timed: a busy machine compiles and starts three processes slowly.
    await until(`${service.name} to answer /ready`, 90_000, async () => {
      if (service.exit !== null) throw new Error(`${service.name} exited: ${service.output()}`)
      return (await call(fetch, `${service.url}/ready`)).status === 200 ? true : undefined
    }, 50)
  }
  await Promise.all([authCore, replicas.A, replicas.B].map(healthy))
  const haproxy = await startHaproxy(t, [{ name: 'A', address: `127.0.0.1:${portA}` }, { name: 'B', address: `127.0.0.1:${portB}` }], { source: PROXY_SOURCE })
  await haproxy.waitFor('UP', ['A', 'B'])

  const direct = fetchFrom(t, '127.0.0.1')
  let readers = 0
  const signUp = async (base: string): Promise<Reader> => {
    readers += 1
    const f = fetchFrom(t, `127.0.1.${readers}`)
    const email = uniqueEmail('replica')
    const response = await f(`${base}/auth/sign-up/email`, json({ email, password: PASSWORD, name: 'Replica Reader' }))
    const body = await response.json() as { user?: { id: string } }
    if (response.status !== 200 || body.user === undefined) throw new Error(`sign-up answered ${response.status} ${JSON.stringify(body)}`)
    return { userId: body.user.id, email, cookie: sessionCookie(response), f }
  }
  const signIn = async (base: string, reader: Reader): Promise<string> => sessionCookie(await reader.f(`${base}/auth/sign-in/email`, json({ email: reader.email, password: PASSWORD })))
  const tokenOf = async (base: string, cookie: string): Promise<string> => ((await (await direct(`${base}/auth/jwt`, { headers: { cookie } })).json()) as { token: string }).token
  /** A session-protected call (the app upstream): 200 signed in, 401 refused. */
  const protectedStatus = async (base: string, headers: Record<string, string>): Promise<number> => {
    const response = await direct(`${base}/api/private`, { headers })
    await response.arrayBuffer()
    return response.status
  }
  /** How long after `since` the other replica refused the credentials; fails past a second. */
  const refusedOn = async (base: string, headers: Record<string, string>, what: string, since: number): Promise<number> => {
    await until(`${what} refused`, REFUSED_WITHIN_MS, async () => (await protectedStatus(base, headers)) === 401 ? true : undefined, 10)
    return Date.now() - since
  }
  const A = replicas.A.url
  const B = replicas.B.url

  await t.test('HAProxy in front: the client address and user agent are the browser\'s', async (t) => {
    const browser = fetchFrom(t, BROWSER_ADDRESS)
    const email = uniqueEmail('proxied')
    const response = await browser(`${haproxy.url}/auth/sign-up/email`, { ...json({ email, password: PASSWORD, name: 'Proxied Reader' }), headers: { 'content-type': 'application/json', origin: TEST_ORIGIN, 'user-agent': USER_AGENT } })
    t.equal(response.status, 200, 'sign-up through HAProxy')
    const cookie = sessionCookie(response)
    const sessions = await (await browser(`${haproxy.url}/auth/list-sessions`, { headers: { cookie, 'user-agent': USER_AGENT } })).json() as Array<{ ipAddress: string | null, userAgent: string | null }>
    t.same(sessions.map((s) => [s.ipAddress, s.userAgent]), [[BROWSER_ADDRESS, USER_AGENT]], 'the session records the browser\'s address (not HAProxy\'s) and user agent')
    // A client that connects to a replica directly cannot claim an address: only HAProxy is trusted.
    const forged = await direct(`${A}/auth/sign-up/email`, { ...json({ email: uniqueEmail('forged'), password: PASSWORD, name: 'Forged' }), headers: { 'content-type': 'application/json', origin: TEST_ORIGIN, 'x-forwarded-for': '203.0.113.9' } })
    const forgedSessions = await (await direct(`${A}/auth/list-sessions`, { headers: { cookie: sessionCookie(forged) } })).json() as Array<{ ipAddress: string | null }>
    t.same(forgedSessions.map((s) => s.ipAddress), ['127.0.0.1'], 'X-Forwarded-For from an untrusted peer is ignored')
  })

  await t.test('sign-in to auth-core caches sessions in Redis; Postgres keeps them too', async (t) => {
    const { Redis } = await import('ioredis')
    const client = new Redis(redis.url, { lazyConnect: true })
    t.teardown(() => { client.disconnect() })
    await client.connect()
    const reader = await signUp(A)
    const token = decodeURIComponent(reader.cookie.split('=')[1]).split('.')[0]
    t.ok(await client.exists(`auth-gateway-session:${token}`), 'the session is in Redis under the project\'s prefix')
    t.ok(await client.exists(`auth-gateway-session:active-sessions-${reader.userId}`), 'with the user\'s list of sessions')
  })

  await t.test('sign-out on A is refused on B at once', async (t) => {
    const reader = await signUp(A)
    t.equal(await protectedStatus(B, { cookie: reader.cookie }), 200, 'B serves the session (and caches it for a minute)')
    t.equal(await protectedStatus(B, { cookie: reader.cookie }), 200, 'from its cache')
    const signedOut = await direct(`${A}/auth/sign-out`, { method: 'POST', headers: { cookie: reader.cookie, origin: TEST_ORIGIN } })
    t.equal(signedOut.status, 200, 'signed out on A')
    const since = Date.now()
    const ms = await refusedOn(B, { cookie: reader.cookie }, 'the signed-out cookie on B', since)
    t.ok(ms < REFUSED_WITHIN_MS, `B refused the signed-out session ${ms} ms after A answered`)
    t.equal(await protectedStatus(B, { cookie: reader.cookie }), 401, 'and keeps refusing it')
  })

  await t.test('revoke-sessions on A refuses every session and token of the user on B at once', async (t) => {
    const reader = await signUp(A)
    const second = await signIn(B, reader)
    const token = await tokenOf(A, reader.cookie)
    const bearer = { authorization: `Bearer ${token}` }
    for (const headers of [{ cookie: reader.cookie }, { cookie: second }, bearer]) t.equal(await protectedStatus(B, headers), 200, 'B vouches for it before')
    const revoked = await direct(`${A}/auth/revoke-sessions`, { method: 'POST', headers: { cookie: reader.cookie, origin: TEST_ORIGIN, 'content-type': 'application/json' }, body: '{}' })
    t.equal(revoked.status, 200, 'revoked on A')
    const since = Date.now()
    const ms = Math.max(
      await refusedOn(B, { cookie: second }, 'the other session on B', since),
      await refusedOn(B, bearer, 'the old token on B', since)
    )
    t.ok(ms < REFUSED_WITHIN_MS, `B refused the other session and the token ${ms} ms after A answered`)
  })

  await t.test('a password change that revokes the other sessions, and deleting the account, reach B at once', async (t) => {
    const reader = await signUp(A)
    const second = await signIn(A, reader)
    const token = await tokenOf(A, second)
    t.equal(await protectedStatus(B, { cookie: second }), 200)
    t.equal(await protectedStatus(B, { authorization: `Bearer ${token}` }), 200)
    const change = await reader.f(`${A}/auth/change-password`, { ...json({ currentPassword: PASSWORD, newPassword: `${PASSWORD} 2`, revokeOtherSessions: true }), headers: { 'content-type': 'application/json', origin: TEST_ORIGIN, cookie: reader.cookie } })
    t.equal(change.status, 200, 'password changed on A, other sessions revoked')
    const since = Date.now()
    await refusedOn(B, { cookie: second }, 'the other session on B', since)
    await refusedOn(B, { authorization: `Bearer ${token}` }, 'the old token on B', since)
    t.comment(`B refused the revoked session and token within ${Date.now() - since} ms`)

    const doomed = await signUp(A)
    const doomedToken = await tokenOf(A, doomed.cookie)
    t.equal(await protectedStatus(B, { cookie: doomed.cookie }), 200)
    t.equal(await protectedStatus(B, { authorization: `Bearer ${doomedToken}` }), 200)
    const deleted = await doomed.f(`${A}/auth/delete-user`, { ...json({ password: PASSWORD }), headers: { 'content-type': 'application/json', origin: TEST_ORIGIN, cookie: doomed.cookie } })
    t.equal(deleted.status, 200, 'account deleted on A')
    const deletedAt = Date.now()
    await refusedOn(B, { cookie: doomed.cookie }, 'the deleted user\'s session on B', deletedAt)
    await refusedOn(B, { authorization: `Bearer ${doomedToken}` }, 'the deleted user\'s token on B', deletedAt)
  })

  await t.test('a token logout and a deleted API key on A are refused on B at once', async (t) => {
    const reader = await signUp(A)
    const login = await reader.f(`${A}/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: reader.email, password: PASSWORD }) })
    t.equal(login.status, 200, 'a token login on A')
    const tokens = await login.json() as { token: string, refreshToken: string }
    const created = await direct(`${A}/auth/api-key/create`, { ...json({ name: 'replicas', scope: 'api' }), headers: { 'content-type': 'application/json', origin: TEST_ORIGIN, cookie: reader.cookie } })
    t.equal(created.status, 200, 'a key made on A')
    const key = await created.json() as { id: string, key: string }
    const bearer = { authorization: `Bearer ${tokens.token}` }
    t.equal(await protectedStatus(B, bearer), 200, 'B vouches for the access token (and caches the login as live)')
    t.equal(await protectedStatus(B, { 'x-api-key': key.key }), 200, 'and for the key (cached for a minute)')

    const out = await direct(`${A}/auth/logout`, { method: 'POST', headers: bearer })
    t.equal(out.status, 204, 'logged out on A')
    const since = Date.now()
    const ms = await refusedOn(B, bearer, 'the logged-out access token on B', since)
    t.ok(ms < REFUSED_WITHIN_MS, `B refused the logged-out token ${ms} ms after A answered`)

    const deleted = await direct(`${A}/auth/api-key/delete`, { ...json({ keyId: key.id }), headers: { 'content-type': 'application/json', origin: TEST_ORIGIN, cookie: reader.cookie } })
    t.equal(deleted.status, 200, 'the key deleted on A')
    const deletedAt = Date.now()
    const keyMs = await refusedOn(B, { 'x-api-key': key.key }, 'the deleted key on B', deletedAt)
    t.ok(keyMs < REFUSED_WITHIN_MS, `B refused the deleted key ${keyMs} ms after A answered`)
    t.equal(await protectedStatus(B, { cookie: reader.cookie }), 200, 'the reader\'s session is untouched')
  })

  await t.test('a consent withdrawal on A: B\'s next identity token carries no profile fields', async (t) => {
    const reader = await signUp(A)
    const withCookie = (body: unknown): RequestInit => ({ ...json(body), headers: { 'content-type': 'application/json', origin: TEST_ORIGIN, cookie: reader.cookie } })
    const claimsOnB = async (): Promise<Record<string, unknown>> => {
      const answer = await direct(`${B}/api/v1/query`, withCookie({ q: 'who am i' }))
      await answer.arrayBuffer()
      t.equal(answer.status, 200, 'B answers the signed-in RAG call')
      return JSON.parse(Buffer.from(lastBearer(upstream).split('.')[1], 'base64url').toString()) as Record<string, unknown>
    }
    t.equal((await direct(`${A}/api/v1/profile`, withCookie({ softwareBackground: 'python', consentGiven: true }))).status, 200, 'consent given on A')
    t.equal((await claimsOnB()).softwareBackground, 'python', 'B sends the consented field (and caches it)')
    t.equal((await direct(`${A}/api/v1/profile`, withCookie({ consentGiven: false }))).status, 200, 'consent withdrawn on A')
    t.equal((await claimsOnB()).softwareBackground, undefined, 'B\'s very next token carries no profile field')
  })

  await t.test('sign-in limits are shared by the replicas', async (t) => {
    const guesser = fetchFrom(t, '127.0.0.5')
    const statuses: number[] = []
    for (let i = 0; i < AUTH_MAX + 1; i++) {
      const base = i % 2 === 0 ? A : B
      const answer = await guesser(`${base}/auth/sign-in/email`, json({ email: 'nobody@example.com', password: 'wrong password' }))
      await answer.arrayBuffer()
      statuses.push(answer.status)
    }
    t.same(statuses, [...Array<number>(AUTH_MAX).fill(401), 429], `${AUTH_MAX} guesses spread over A and B, then 429 on either`)
  })

  await t.test('Redis killed and restarted: requests are served throughout, then shared again', async (t) => {
    const reader = await signUp(A)
    await redis.kill()
    // Without Redis: sign-in and sessions from Postgres, on both replicas.
    const signedIn = await call(reader.f, `${B}/auth/sign-in/email`, json({ email: reader.email, password: PASSWORD }))
    t.equal(signedIn.status, 200, `sign-in without Redis (${describe(signedIn)})`)
    for (const base of [A, B]) t.equal(await protectedStatus(base, { cookie: reader.cookie }), 200, 'a session is served without Redis')
    const during = await signUp(B)
    t.equal(await protectedStatus(A, { cookie: during.cookie }), 200, 'a session created without Redis is served by the other replica')
    const publicAnswers = await Promise.all([A, B, haproxy.url].map((base) => call(direct, `${base}/api/v1/query`, json({ q: 'without redis' }))))
    t.same(publicAnswers.map((a) => a.status), [200, 200, 200], 'public RAG answers on both replicas and through HAProxy')

    await redis.start()
    // Shared again: a sign-out on A reaches B at once (the subscription is back).
    const probe = await signUp(A)
    await until('the broadcast to work again', 20_000, async () => {
      const cookie = await signIn(A, probe)
      if (await protectedStatus(B, { cookie }) !== 200) return undefined
      await direct(`${A}/auth/sign-out`, { method: 'POST', headers: { cookie, origin: TEST_ORIGIN } })
      const since = Date.now()
      for (;;) {
        if (await protectedStatus(B, { cookie }) === 401) return true
        if (Date.now() - since > REFUSED_WITHIN_MS) return undefined
      }
    }, 200)
    // The session signed in during the outage was never written to Redis; what Redis lost, Postgres has.
    t.equal(await protectedStatus(B, { cookie: during.cookie }), 200, 'the session created during the outage still works')
    t.ok(authCore.output().includes('"event":"redis_down"'), 'auth-core logged the outage at warn')
    for (const service of [replicas.A, replicas.B]) t.match(service.output(), /"event":"redis_down"/, `${service.name} logged the outage`)
  })

  /** Anonymous and signed-in calls through HAProxy, `lanes` at a time, until stopped. */
  const traffic = (cookie: string, lanes = 4): { answers: Answer[], flowing: (more: number) => Promise<void>, stop: () => Promise<Answer[]> } => {
    let running = true
    const answers: Answer[] = []
    const loops = Array.from({ length: lanes }, async (_, lane) => {
      while (running) {
        answers.push(lane % 2 === 0
          ? await call(direct, `${haproxy.url}/api/v1/query`, json({ q: 'rolling' }))
          : await call(direct, `${haproxy.url}/api/private`, { headers: { cookie } }))
      }
    })
    return {
      answers,
      async flowing (more) {
        const from = answers.length
        await until(`${more} more answers through HAProxy`, 10_000, async () => answers.length >= from + more ? true : undefined, 10)
      },
      async stop () {
        running = false
        await Promise.all(loops)
        return answers
      }
    }
  }

  await t.test('a replica restarted through HAProxy (SIGTERM, start again): no request fails', async (t) => {
    const reader = await signUp(A)
    const load = traffic(reader.cookie)
    const old = replicas.A
    await load.flowing(50)
    const exited = new Promise<void>((resolve) => { old.child.once('exit', () => { resolve() }) })
    old.child.kill('SIGTERM')
    await exited
    t.equal(old.exit?.code, 0, 'replica A drained and exited 0 on SIGTERM')
    await load.flowing(50)
    replicas.A = replica('A', portA)
    await healthy(replicas.A)
    await haproxy.waitFor('UP', ['A'])
    await load.flowing(50)
    const answers = await load.stop()
    const failed = answers.filter((a) => a.status !== 200)
    t.same(failed.map(describe), [], `${answers.length} requests while A restarted, none failed`)
  })

  await t.test('a replica killed with SIGKILL costs only its in-flight requests', async (t) => {
    const reader = await signUp(A)
    const lanes = 4
    const load = traffic(reader.cookie, lanes)
    await load.flowing(50)
    const victim = replicas.A
    const killed = new Promise<void>((resolve) => { victim.child.once('exit', () => { resolve() }) })
    victim.child.kill('SIGKILL')
    await killed
    // The survivor carries on, while HAProxy notices and after.
    await load.flowing(100)
    await haproxy.waitFor('DOWN', ['A'])
    await load.flowing(50)
    const answers = await load.stop()
    const failed = answers.filter((a) => a.status !== 200)
    t.ok(failed.length <= lanes, `at most the in-flight requests failed (${failed.length} of ${answers.length}: ${failed.map(describe).join(', ')})`)
    t.equal(replicas.B.exit, null, 'B still runs')
  })
})
