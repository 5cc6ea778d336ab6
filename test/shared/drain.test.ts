import t from 'tap'
import type { Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { Client } from 'undici'
import { buildAuthCore } from '../../auth-core/app.ts'
import { buildGateway } from '../../gateway/app.ts'
import { listenOn, startTestStack, testConfig } from '../helper.ts'

// shared/drain.ts on both services: from the moment closing starts, `/ready` answers 503 (a load
// balancer stops sending) while a request that still reaches the process on an open keep-alive
// connection is served (Fastify's default is a 503 in a format of its own, not the project's).
const stack = await startTestStack(t)

/**
 * Holds `app`'s close at its preClose stage (after the drain plugin's hook, before the server stops
 * accepting and closes idle connections): the window in which a keep-alive client's next request
 * can still arrive. `started` resolves once it is there; `release` lets the close go on.
 */
function holdClose (app: FastifyInstance): { started: Promise<void>, release: () => void } {
  let release = (): void => {}
  const started = new Promise<void>((resolve) => {
    app.addHook('preClose', (done) => {
      release = done
      resolve()
    })
  })
  return { started, release: () => { release() } }
}

async function checkDraining (t: Test, app: FastifyInstance): Promise<void> {
  const held = holdClose(app)
  await app.ready()
  const url = await listenOn(app)
  const [forReady, forHealth] = [new Client(url, { keepAliveTimeout: 60_000 }), new Client(url, { keepAliveTimeout: 60_000 })]
  t.teardown(() => Promise.all([forReady.destroy(), forHealth.destroy()]))
  t.equal((await forReady.request({ method: 'GET', path: '/ready' })).statusCode, 200, 'ready before, on a keep-alive connection')
  t.equal((await forHealth.request({ method: 'GET', path: '/health' })).statusCode, 200)

  const closed = app.close()
  await held.started
  t.equal(app.draining, true, 'draining from the start of close')
  const ready = await forReady.request({ method: 'GET', path: '/ready' })
  t.equal(ready.statusCode, 503, '/ready answers 503 while draining')
  t.same(await ready.body.json(), { error: 'not_ready', message: 'Not ready: the process is shutting down', requestId: ready.headers['x-request-id'], status: 'draining', checks: {} })
  const health = await forHealth.request({ method: 'GET', path: '/health' })
  t.equal(health.statusCode, 200, 'another request on an open connection is served, not refused')
  t.equal(health.headers.connection, 'close', 'and told not to come back on that connection')
  await health.body.dump()
  held.release()
  await closed
}

t.test('the gateway, draining', async (t) => {
  const config = testConfig(t, { DATABASE_URL: stack.databaseUrl, AUTH_CORE_URL: stack.authCoreUrl })
  const gateway = await buildGateway(config, { pool: stack.pool })
  t.teardown(() => gateway.close())
  await checkDraining(t, gateway)
})

t.test('auth-core, draining', async (t) => {
  const config = testConfig(t, { DATABASE_URL: stack.databaseUrl })
  const authCore = await buildAuthCore(config, { pool: stack.pool })
  t.teardown(() => authCore.close())
  await checkDraining(t, authCore)
})
