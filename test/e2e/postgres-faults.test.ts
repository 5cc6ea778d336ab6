import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import pg from 'pg'
import { cookieFetch, JWT_TEST_SECRET, SECRET, TEST_ORIGIN, uniqueEmail } from '../helper.ts'
import { recordingUpstream } from '../upstream.ts'
import { freePort } from '../ports.ts'
import { until } from '../poll.ts'
import { call, DB_PASSWORD, describe, postgresBin, runScript, spawnService, startCluster } from '../processes.ts'
import type { Answer } from '../processes.ts'

/*
 * Postgres taken away under traffic, as an operator would: `pg_ctl stop -m fast` and `kill -9` of
 * the postmaster on a cluster this test makes itself, with auth-core and the gateway running as
 * their own processes (`auth-core/server.ts`, `gateway/server.ts`) so that "the process exited" is
 * observed, not inferred.
 */

const PASSWORD = 'correct horse battery'
const LANES = 4
/** Requests of one traffic run, at most. */
const TRAFFIC_BUDGET = 600
const OUTAGE_ANSWER_MS = 6_000
const READY_WITHIN_MS = 20_000

/** What a call may answer while Postgres comes and goes: success, or 503 `database_unavailable` in JSON. */
const acceptable = (answer: Answer): boolean => answer.status === 200 || (answer.status === 503 && answer.error === 'database_unavailable')

interface Reader {
  f: ReturnType<typeof cookieFetch>
  userId: string
  email: string
}

interface Lane {
  reader: Reader
  /** The highest write number that answered 200. */
  acknowledged: number
  /** The highest write number sent. */
  attempted: number
}

interface Traffic {
  answers: Array<{ what: string, answer: Answer }>
  stop: () => Promise<void>
}

/** Profile writes and signed-in RAG calls from every lane, and sign-ins beside them, paced, until stopped or the budget is spent. */
function startTraffic (gateway: string, lanes: Lane[], signingIn: Reader): Traffic {
  const answers: Traffic['answers'] = []
  let running = true
  let sent = 0
  const signIns = async (): Promise<void> => {
    while (running && sent < TRAFFIC_BUDGET) {
      sent += 1
      const answer = await call(cookieFetch(), `${gateway}/auth/sign-in/email`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: signingIn.email, password: PASSWORD }) })
      answers.push({ what: 'sign-in', answer })
      await new Promise((resolve) => setTimeout(resolve, answer.status === 200 ? 40 : 250))
    }
  }
  const loops = [signIns(), ...lanes.map(async (lane) => {
    while (running && sent < TRAFFIC_BUDGET) {
      sent += 2
      const n = lane.attempted + 1
      lane.attempted = n
      const write = await call(lane.reader.f, `${gateway}/api/v1/profile`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ softwareBackground: `w${n}`, consentGiven: true }) })
      answers.push({ what: 'profile write', answer: write })
      if (write.status === 200) lane.acknowledged = n
      answers.push({ what: 'signed-in RAG', answer: await call(lane.reader.f, `${gateway}/api/v1/query`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"q":"x"}' }) })
      // A client backs off a little after a refusal, as the 503 asks.
      await new Promise((resolve) => setTimeout(resolve, write.status === 200 ? 40 : 250))
    }
  })]
  return {
    answers,
    async stop () {
      running = false
      await Promise.all(loops)
    }
  }
}

const bin = postgresBin()

t.test('Postgres stopped, restarted and killed under traffic', { skip: bin === null ? 'no initdb on this machine' : false }, async (t) => {
  const cluster = await startCluster(t, bin as string)
  const rag = await recordingUpstream(t)
  const [gatewayPort, authCorePort] = [await freePort(), await freePort()]
  const env: Record<string, string> = {
    DATABASE_URL: cluster.url,
    DATA_DIR: mkdtempSync('/tmp/pgfaults-data-'),
    PORT: String(gatewayPort),
    AUTH_CORE_PORT: String(authCorePort),
    AUTH_CORE_URL: `http://127.0.0.1:${authCorePort}`,
    BETTER_AUTH_SECRET: SECRET,
    JWT_SECRET: JWT_TEST_SECRET,
    ALLOWED_ORIGINS: TEST_ORIGIN,
    RAG_UPSTREAM_URL: rag.url,
    LOG_LEVEL: 'warn',
    AUTH_RATE_LIMIT_MAX: '10000',
    RAG_RATE_LIMIT_ANON: '100000',
    RAG_RATE_LIMIT_USER: '100000',
    RATE_LIMIT_MAX: '100000'
  }
  t.teardown(() => { rmSync(env.DATA_DIR, { recursive: true, force: true }) })
  await runScript('gateway/cli/migrate.ts', env)
  const authCore = spawnService(t, 'auth-core', 'auth-core/server.ts', env, env.AUTH_CORE_URL)
  const gatewayService = spawnService(t, 'gateway', 'gateway/server.ts', env, `http://127.0.0.1:${gatewayPort}`)
  const services = [authCore, gatewayService]
  const gateway = gatewayService.url
  for (const service of services) {
    // Waited on, not timed: a busy machine compiles and starts three processes slowly.
    await until(`${service.name} to answer /health`, 90_000, async () => {
      if (service.exit !== null) throw new Error(`${service.name} exited at startup: ${service.output()}`)
      return (await call(fetch, `${service.url}/health`)).status === 200 ? true : undefined
    })
  }

  const db = new pg.Pool({ connectionString: cluster.url, max: 2 })
  db.on('error', () => {})
  t.teardown(() => db.end())

  const signUp = async (): Promise<Reader> => {
    const f = cookieFetch()
    const email = uniqueEmail('fault')
    const response = await call(f, `${gateway}/auth/sign-up/email`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email, password: PASSWORD, name: 'Fault Reader' }) })
    if (response.status !== 200) throw new Error(`sign-up answered ${describe(response)}`)
    return { f, email, userId: (response.json as { user: { id: string } }).user.id }
  }
  const lanes: Lane[] = []
  for (let i = 0; i < LANES; i++) lanes.push({ reader: await signUp(), acknowledged: 0, attempted: 0 })
  const probe = await signUp()
  const tokenAnswer = await call(probe.f, `${gateway}/auth/jwt`)
  t.equal(tokenAnswer.status, 200, 'a client token for the bearer checks')
  const bearer = { authorization: `Bearer ${(tokenAnswer.json as { token: string }).token}` }

  const allAnswers: Traffic['answers'] = []
  /** Stops the test at once, with the service's last words, when a process died. */
  const noneExited = (when: string): void => {
    for (const service of services) {
      if (service.exit !== null) throw new Error(`${when}: ${service.name} exited (${JSON.stringify(service.exit)}); its last output:\n${service.output().slice(-3000)}`)
    }
  }
  const stillRunning = async (when: string): Promise<void> => {
    noneExited(when)
    for (const service of services) {
      t.equal(service.exit, null, `${when}: ${service.name} is still running`)
      t.equal((await call(fetch, `${service.url}/health`)).status, 200, `${when}: ${service.name} answers /health`)
      // What `shared/run.ts` prints when close-with-grace caught an uncaught exception or rejection.
      t.notMatch(service.output(), /stopping after an error/, `${when}: ${service.name} did not go through close-with-grace`)
    }
  }

  /** During an outage: every check, repeated for `windowMs` so that the session and revocation caches (5 s) run out. */
  const duringOutage = async (label: string, windowMs: number): Promise<void> => {
    const seen = new Map<string, Answer[]>()
    const note = (what: string, answer: Answer): void => { seen.set(what, [...(seen.get(what) ?? []), answer]) }
    const deadline = Date.now() + windowMs
    do {
      noneExited(`${label}, during the outage`)
      const [profileRead, profileWrite, gatewayBearer, gatewayCookie, authCoreBearer, authCoreCookie, publicRag, signIn] = await Promise.all([
        call(probe.f, `${gateway}/api/v1/profile`),
        call(probe.f, `${gateway}/api/v1/profile`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"consentGiven":false}' }),
        call(fetch, `${gateway}/api/validate-session`, { headers: bearer }),
        call(probe.f, `${gateway}/api/validate-session`),
        call(fetch, `${authCore.url}/api/validate-session`, { headers: bearer }),
        call(fetch, `${authCore.url}/api/validate-session`, { headers: { cookie: [...probe.f.cookies].map(([name, value]) => `${name}=${value}`).join('; ') } }),
        call(fetch, `${gateway}/api/v1/query`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"q":"anonymous"}' }),
        call(cookieFetch(), `${gateway}/auth/sign-in/email`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: probe.email, password: PASSWORD }) })
      ])
      note('profile read', profileRead)
      note('profile write', profileWrite)
      note('gateway validate-session (bearer)', gatewayBearer)
      note('gateway validate-session (cookie)', gatewayCookie)
      note('auth-core validate-session (bearer)', authCoreBearer)
      note('auth-core validate-session (cookie)', authCoreCookie)
      note('public RAG', publicRag)
      note('sign-in', signIn)
      await new Promise((resolve) => setTimeout(resolve, 500))
    } while (Date.now() < deadline)
    const list = (answers: Answer[]): string => answers.map(describe).join(', ')
    for (const what of ['profile read', 'profile write', 'sign-in']) {
      const answers = seen.get(what) ?? []
      t.ok(answers.every((a) => a.status === 503 && a.error === 'database_unavailable' && a.ms < OUTAGE_ANSWER_MS), `${label}: ${what} → 503 database_unavailable within ${OUTAGE_ANSWER_MS} ms (${list(answers)})`)
    }
    for (const what of ['gateway validate-session (bearer)', 'gateway validate-session (cookie)', 'auth-core validate-session (bearer)', 'auth-core validate-session (cookie)']) {
      const answers = seen.get(what) ?? []
      // A look-up cached before the outage may still vouch for the caller; "no user" never.
      const vouched = (a: Answer): boolean => a.status === 200 && (a.json as { user?: { id?: string } | null } | null)?.user?.id === probe.userId
      t.ok(answers.every((a) => (a.status === 503 && a.error === 'database_unavailable' && a.ms < OUTAGE_ANSWER_MS) || vouched(a)), `${label}: ${what} → 503, never "no user" (${list(answers)})`)
      t.ok(answers.some((a) => a.status === 503), `${label}: ${what} → 503 once nothing is cached`)
    }
    const sample = (seen.get('sign-in') ?? []).find((a) => a.status === 503)
    t.match(sample?.json, { error: 'database_unavailable', message: 'The database is unavailable, try again shortly', requestId: String }, `${label}: the 503 body is the project's`)
    t.same(Object.keys(sample?.json ?? {}).sort(), ['error', 'message', 'requestId'], `${label}: and nothing else`)
    const publicRag = seen.get('public RAG') ?? []
    t.ok(publicRag.every((a) => a.status === 200), `${label}: public RAG keeps answering 200 (${list(publicRag)})`)
  }

  /** After Postgres is back: ready within 20 s, then sign-in, a profile write and its read. */
  const recovered = async (label: string, restartedAt: number): Promise<void> => {
    await until(`${label}: /ready`, READY_WITHIN_MS, async () => {
      noneExited(`${label}, after the restart`)
      return (await call(fetch, `${gateway}/ready`)).status === 200 ? true : undefined
    }, 200)
    const readyMs = Date.now() - restartedAt
    const f = cookieFetch()
    const signIn = await call(f, `${gateway}/auth/sign-in/email`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: probe.email, password: PASSWORD }) })
    t.equal(signIn.status, 200, `${label}: sign-in succeeds (${describe(signIn)})`)
    const value = `after ${label}`
    const write = await call(f, `${gateway}/api/v1/profile`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ interestArea: value, consentGiven: true }) })
    t.equal(write.status, 200, `${label}: profile write succeeds (${describe(write)})`)
    const read = await call(f, `${gateway}/api/v1/profile`)
    t.equal((read.json as { interestArea?: string } | null)?.interestArea, value, `${label}: profile read returns it`)
    t.comment(`${label}: /ready 200 ${readyMs} ms after Postgres accepted connections again; sign-in ${signIn.ms} ms, write ${write.ms} ms`)
  }

  const cycle = async (label: string, takeAway: () => Promise<void>, outageWindowMs: number): Promise<void> => {
    const traffic = startTraffic(gateway, lanes, probe)
    await until(`${label}: traffic flowing`, 10_000, async () => traffic.answers.filter((a) => a.answer.status === 200).length >= 8 ? true : undefined, 20)
    try {
      await takeAway()
      if (outageWindowMs > 0) await duringOutage(label, outageWindowMs)
      else await new Promise((resolve) => setTimeout(resolve, 300))
      noneExited(`${label}, during the outage`)
      await cluster.start()
      await recovered(label, Date.now())
      // The traffic itself recovers too: more writes acknowledged after the restart.
      const acknowledged = lanes.map((lane) => lane.acknowledged)
      await until(`${label}: traffic writes acknowledged again`, 10_000, async () => lanes.every((lane, i) => lane.acknowledged > acknowledged[i]) ? true : undefined, 50)
    } finally {
      await traffic.stop()
    }
    allAnswers.push(...traffic.answers)
    const bad = traffic.answers.filter((a) => !acceptable(a.answer))
    t.same(bad.map((a) => `${a.what}: ${describe(a.answer)}`), [], `${label}: ${traffic.answers.length} requests under traffic answered 200 or 503 database_unavailable`)
    if (bad.length > 0) for (const service of services) t.comment(`${service.name} errors:\n${service.output().split('\n').filter((line) => line.includes('"level":50')).slice(-10).join('\n')}`)
    t.ok(traffic.answers.some((a) => a.answer.status === 503), `${label}: the outage was seen by the traffic`)
    await stillRunning(label)
  }

  await cycle('fast stop 1', () => cluster.stop(), 7_000)
  await cycle('fast stop 2', () => cluster.stop(), 0)
  await cycle('fast stop 3', () => cluster.stop(), 0)
  await cycle('kill -9', () => cluster.kill(), 7_000)

  // Writes are sequential per lane: the stored one is the last acknowledged or a later one that committed unanswered.
  for (const [i, lane] of lanes.entries()) {
    const { rows } = await db.query<{ software_background: string | null }>('SELECT software_background FROM profile WHERE user_id = $1', [lane.reader.userId])
    const stored = Number((rows[0]?.software_background ?? 'w0').slice(1))
    t.ok(stored >= lane.acknowledged && stored <= lane.attempted, `lane ${i}: stored write w${stored}, acknowledged up to w${lane.acknowledged}, sent up to w${lane.attempted}`)
  }
  const { rows: [last] } = await db.query<{ interest_area: string | null }>('SELECT interest_area FROM profile WHERE user_id = $1', [probe.userId])
  t.equal(last?.interest_area, 'after kill -9', 'the write acknowledged after the last restart is stored')
  for (const service of services) t.match(service.output(), /"level":40[^\n]*"msg":"a Postgres connection was lost"/, `${service.name} logged its lost connections at warn`)
  const logs = services.map((service) => service.output()).join('\n')
  t.notMatch(logs, DB_PASSWORD, 'no log line carries the database password')
  const tally = new Map<string, number>()
  for (const { what, answer } of allAnswers) {
    const key = `${what} ${answer.status} ${answer.error ?? ''}`.trim()
    tally.set(key, (tally.get(key) ?? 0) + 1)
  }
  const slowest = Math.max(...allAnswers.filter((a) => a.answer.status === 503).map((a) => a.answer.ms))
  t.comment(`${allAnswers.length} requests under traffic: ${[...tally].map(([key, n]) => `${key}: ${n}`).join('; ')}; slowest 503 ${slowest} ms`)
})
