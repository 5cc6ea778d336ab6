import type { Dispatcher } from 'undici'
import type { Socket } from 'node:net'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { clientAddress } from '../client-address.ts'
import type { PublicFacts } from '../client-address.ts'
import { InvalidJsonError, upstreamError } from '../errors.ts'
import type { IdentityTokens } from '../identity/identity-tokens.ts'
import { clientResponseHeaders, upstreamRequestHeaders } from './forwarded-headers.ts'
import { ClientClosedError, isGone, mediaType } from './upstream-call.ts'
import type { UpstreamAnswer, UpstreamBody, UpstreamCall } from './upstream-call.ts'
import type { UpstreamClient } from './upstream-client.ts'

/**
 * Forwards the request to an upstream: the allowlisted client headers, the gateway's own (the
 * caller's identity token when signed in) and the normalised target the access policy decided on.
 * The answer comes back whole when it is small, else as it arrives; a client that leaves aborts the
 * upstream call wherever it is.
 */
export async function forward (tokens: IdentityTokens, upstream: UpstreamClient, name: string, origin: PublicFacts, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  const identity = request.identity
  const issued = identity === null ? null : tokens.for(identity)
  const upstreamIdentity = issued instanceof Promise ? await issued : issued
  const headers = upstreamRequestHeaders(request.headers, {
    clientIp: clientAddress(request),
    // Not `request.host`/`protocol`: under TRUST_PROXY those are the client's X-Forwarded-Host/-Proto.
    host: origin.host,
    protocol: origin.protocol,
    identity: upstreamIdentity,
    requestId: request.id
  })
  const socket = request.raw.socket
  // The client left while its identity was being resolved: nobody to call the upstream for.
  if (isGone(socket)) return abandoned(request, reply, name)
  const call = upstream.call(
    request.method as Dispatcher.HttpMethod,
    // `request.url` is the normalised target the access policy decided on: nothing else is sent.
    request.url,
    headers,
    Buffer.isBuffer(request.body) ? request.body : undefined,
    socket
  )
  watchClient(socket, call)
  const metrics = request.server.metrics
  const started = metrics === null ? 0 : performance.now()
  let answer: UpstreamAnswer
  try {
    answer = await call.answer
  } catch (err) {
    if (err instanceof ClientClosedError) return abandoned(request, reply, name)
    const failure = upstreamError(err, name)
    metrics?.upstreamErrors.inc({ upstream: name, error: failure.code })
    throw failure
  }
  metrics?.upstreamDuration.observe({ upstream: name, status: answer.statusCode }, (performance.now() - started) / 1000)
  const answerHeaders = clientResponseHeaders(answer.headers)
  if (Buffer.isBuffer(answer.body)) return reply.code(answer.statusCode).headers(answerHeaders).send(answer.body)
  return sendStreamed(reply, answer.statusCode, answer.headers, answerHeaders, answer.body, name)
}

const kCall = Symbol('upstream call')
const kWatched = Symbol('watched for the client leaving')
type Watched = Socket & { [kCall]?: UpstreamCall, [kWatched]?: true }

/*
 * A client that leaves cancels its call. A client leaves by its connection (HTTP/1.1), so the
 * connection is watched, once, by module functions that find the call on it: a call costs no
 * listener, closure or new property. Its FIN comes before the close: Node then ends the socket (no
 * answer could be sent), so that is where the call stops. A call that has finished ignores it.
 * (Pipelined requests: only the latest call of a connection is known; the others end at their deadline.)
 */
function watchClient (socket: Watched, call: UpstreamCall): void {
  socket[kCall] = call
  if (socket[kWatched] !== true) {
    socket[kWatched] = true
    socket.on('end', onClientGone)
    socket.on('close', onClientGone)
  }
}

function onClientGone (this: Watched): void {
  const call = this[kCall]
  if (call === undefined) return
  this[kCall] = undefined
  call.cancel(new ClientClosedError())
}

/** The client is gone: no answer to send (the socket is closed), so the reply is left alone. */
function abandoned (request: FastifyRequest, reply: FastifyReply, name: string): FastifyReply {
  request.log.info({ upstream: name }, 'client closed the connection before the answer')
  return reply.hijack()
}

const EVENT_STREAM = 'text/event-stream'

/**
 * A streamed answer: the gateway's headers (CORS, security, set by the earlier stages) go out with
 * the upstream's at once, then every chunk as it arrives, at the pace the client reads.
 */
function sendStreamed (reply: FastifyReply, statusCode: number, upstreamHeaders: UpstreamAnswer['headers'], headers: Record<string, string | string[]>, body: UpstreamBody, name: string): FastifyReply {
  const res = reply.raw
  const eventStream = mediaType(upstreamHeaders['content-type']) === EVENT_STREAM
  // A proxy in front (nginx) must not hold chunks back either.
  headers['x-accel-buffering'] = 'no'
  if (eventStream) headers['cache-control'] = 'no-cache'
  // A long answer of known length keeps it (a download shows its progress); an event stream may end with an error event.
  else if (typeof upstreamHeaders['content-length'] === 'string') headers['content-length'] = upstreamHeaders['content-length']
  body.onUpstreamError = (err) => {
    const failure = upstreamError(err, name)
    reply.server.metrics?.upstreamErrors.inc({ upstream: name, error: failure.code })
    reply.log.warn({ err: failure, upstream: name }, 'upstream failed mid-answer')
    // The EventSource convention, when the last event was complete; else a truncated body (the
    // client's parser discards a partial event when the stream breaks off).
    if (eventStream && res.headersSent && body.atEventBoundary()) {
      body.push(`event: error\ndata: ${JSON.stringify({ error: failure.code.toLowerCase(), message: failure.message })}\n\n`)
      body.push(null)
    } else {
      body.destroy(failure)
    }
  }
  // The headers at once, before the first chunk: a browser sees the answer begin.
  res.once('pipe', () => { if (!res.headersSent) res.flushHeaders() })
  return reply.code(statusCode).headers(headers).send(body)
}

/** Buffers bodies (they are small) so the upstream gets exactly what was checked, with a length. */
export function bufferBodies (scope: FastifyInstance, contentTypes: string | string[], validateJson: boolean): void {
  scope.removeAllContentTypeParsers()
  scope.addContentTypeParser(contentTypes, { parseAs: 'buffer' }, (_request, body, done) => {
    if (validateJson) {
      try {
        JSON.parse(body.toString('utf8'))
      } catch {
        done(new InvalidJsonError(), undefined)
        return
      }
    }
    done(null, body)
  })
}
