import fp from 'fastify-plugin'
import type { Socket } from 'node:net'
import type { FastifyInstance } from 'fastify'

declare module 'fastify' {
  interface FastifyInstance {
    /** True from the moment closing starts: `/ready` then answers 503, so a load balancer stops sending. */
    readonly draining: boolean
  }
}

/**
 * Fastify's `return503OnClosing: false`, for both services: a request that arrives on an open
 * connection while draining is served (with `Connection: close`) rather than refused with a 503; a
 * load balancer has already been told by `/ready`, and no new connection is accepted.
 */
export const SERVE_WHILE_DRAINING = { return503OnClosing: false } as const

/** While draining, connections that finish their answer are closed this often. */
const IDLE_SWEEP_MS = 100

/**
 * Graceful close that really ends: once closing starts, every answer says `Connection: close` and
 * connections that go idle (their in-flight answer sent) are closed, so keep-alive clients (browsers,
 * load balancers) neither hold the process open nor send further requests to a closing server, and
 * connections that never carried a request are closed too. Fastify itself closes only the
 * connections idle at the moment close begins.
 */
async function drain (app: FastifyInstance): Promise<void> {
  let closing = false
  app.decorate('draining', { getter: () => closing })
  let sweeper: NodeJS.Timeout | undefined
  // Connections that never sent a byte (a browser's spare, preconnected one) are not idle to Node,
  // and server.close() stops the headers timeout that would close them: they are closed here once
  // a sweep found them still unused.
  const connections = new Set<Socket>()
  let unused = new Set<Socket>()
  app.server.on('connection', (socket: Socket) => {
    connections.add(socket)
    socket.once('close', () => { connections.delete(socket) })
  })
  const sweep = (): void => {
    app.server.closeIdleConnections()
    const stillUnused = new Set<Socket>()
    for (const socket of connections) {
      if (socket.bytesRead > 0) continue
      if (unused.has(socket)) socket.destroy()
      else stillUnused.add(socket)
    }
    unused = stillUnused
  }
  app.addHook('preClose', function startDraining (done) {
    closing = true
    sweeper = setInterval(sweep, IDLE_SWEEP_MS)
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
