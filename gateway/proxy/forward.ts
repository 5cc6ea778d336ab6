import type { Dispatcher, Pool } from 'undici'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { clientAddress } from '../client-address.ts'
import type { PublicFacts } from '../client-address.ts'
import { InvalidJsonError, upstreamError } from '../errors.ts'
import type { IdentityTokens } from '../identity/identity-tokens.ts'
import { clientResponseHeaders, upstreamRequestHeaders } from './forwarded-headers.ts'
import { callBuffered } from './upstream-client.ts'
import type { UpstreamAnswer } from './upstream-client.ts'

/**
 * Forwards the request to an upstream: the allowlisted client headers, the gateway's own (the
 * caller's identity token when signed in) and the normalised target the access policy decided on.
 */
export async function forward (tokens: IdentityTokens, pool: Pool, name: string, origin: PublicFacts, request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
  const identity = request.identity
  const issued = identity === null ? null : tokens.for(identity)
  const upstreamIdentity = issued instanceof Promise ? await issued : issued
  const headers = upstreamRequestHeaders(request.headers, {
    clientIp: clientAddress(request),
    // Not `request.host`/`protocol`: under TRUST_PROXY those are the client's X-Forwarded-Host/-Proto.
    host: origin.host,
    protocol: origin.protocol,
    identity: upstreamIdentity
  })
  let answer: UpstreamAnswer
  try {
    // `request.url` is the normalised target the access policy decided on: nothing else is sent.
    answer = await callBuffered(pool, {
      method: request.method as Dispatcher.HttpMethod,
      path: request.url,
      headers,
      body: Buffer.isBuffer(request.body) ? request.body : undefined
    })
  } catch (err) {
    throw upstreamError(err, name)
  }
  return reply.code(answer.statusCode).headers(clientResponseHeaders(answer.headers)).send(answer.body)
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
