import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'

/** The header a request's id travels in: from a trusted proxy, back to the client, on to auth-core and the upstreams. */
export const REQUEST_ID_HEADER = 'x-request-id'

// What a proxy's id may look like (a UUID, HAProxy's `%ID`, AWS's `Root=1-…`): short, and nothing
// that could break a log line or a header.
const VALID_REQUEST_ID = /^[\w.:@/+=-]{1,128}$/

/**
 * Fastify's `genReqId` for a service: the `X-Request-Id` of a peer `trusted` says may set it, when
 * it looks like an id; otherwise a fresh UUID. Fastify puts the id in every log line of the request
 * (`reqId`) and the error bodies carry it (`requestId`).
 */
export function requestIdGenerator (trusted: (peer: string | undefined) => boolean): (req: IncomingMessage) => string {
  return function requestId (req) {
    const given = req.headers[REQUEST_ID_HEADER]
    if (typeof given === 'string' && VALID_REQUEST_ID.test(given) && trusted(req.socket.remoteAddress)) return given
    return randomUUID()
  }
}

/** Every answer carries its request's id, errors and 404s included. */
async function requestIds (app: FastifyInstance): Promise<void> {
  app.addHook('onRequest', function returnRequestId (request, reply, done) {
    reply.header(REQUEST_ID_HEADER, request.id)
    done()
  })
}

export default fp(requestIds, { name: 'request-id' })
