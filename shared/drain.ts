import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'

/** While draining, connections that finish their answer are closed this often. */
const IDLE_SWEEP_MS = 100

/**
 * Graceful close that really ends: once closing starts, every answer says `Connection: close` and
 * connections that go idle (their in-flight answer sent) are closed, so keep-alive clients (browsers,
 * load balancers) neither hold the process open nor send further requests to a closing server.
 * Fastify itself closes only the connections idle at the moment close begins.
 */
async function drain (app: FastifyInstance): Promise<void> {
  let closing = false
  let sweeper: NodeJS.Timeout | undefined
  app.addHook('preClose', function startDraining (done) {
    closing = true
    sweeper = setInterval(() => { app.server.closeIdleConnections() }, IDLE_SWEEP_MS)
    sweeper.unref()
    done()
  })
  app.addHook('onSend', function closeWhenDraining (_request, reply, payload, done) {
    if (closing) reply.header('connection', 'close')
    done(null, payload)
  })
  app.addHook('onClose', function stopDraining (_instance, done) {
    clearInterval(sweeper)
    done()
  })
}

export default fp(drain, { name: 'drain' })
