import type { FastifyInstance } from 'fastify'
import type { IncomingHttpHeaders } from 'node:http'
import { upstreamError } from '../errors.ts'
import { allowedHeaders, AUTH_CORE_REQUEST_HEADERS } from '../proxy/forwarded-headers.ts'
import { forwardedHeaders } from './auth-proxy.ts'
import { AUTH_CORE_PREFIX } from '../route-paths.ts'

/** Seed-compatible alias of better-auth's `POST /update-user`, which changes the method too. */
export const PROFILE_UPDATE_PATH = '/auth/user/profile'
const UPDATE_USER_TARGET = `${AUTH_CORE_PREFIX}/update-user`

export interface UserProfileRoutesOptions {
  /** The host and protocol auth-core is told the client used. */
  publicUrl: string
}

/** `PATCH /auth/user/profile` → auth-core's `POST /update-user`, on the auth-core pool. */
export default async function userProfileRoutes (app: FastifyInstance, options: UserProfileRoutesOptions): Promise<void> {
  const toAuthCore = forwardedHeaders(options.publicUrl)
  app.patch(PROFILE_UPDATE_PATH, {
    schema: {
      summary: 'Alias of POST /auth/update-user',
      description: 'The better-auth user\'s name, image and writable custom fields (docs/profiles.md); auth-core requires the session and answers as `update-user` does.',
      tags: ['Auth'],
      body: { type: 'object' }
    }
  }, async (request, reply) => {
    // The body is sent again as JSON, whatever the client's own content headers said.
    const headers: IncomingHttpHeaders = { ...allowedHeaders(request.headers, AUTH_CORE_REQUEST_HEADERS), 'content-type': 'application/json', accept: 'application/json' }
    let response
    try {
      response = await app.authCore.request({
        method: 'POST',
        path: UPDATE_USER_TARGET,
        headers: toAuthCore(request, headers),
        body: JSON.stringify(request.body ?? {})
      })
    } catch (err) {
      throw upstreamError(err, 'auth')
    }
    const text = await response.body.text()
    const setCookie = response.headers['set-cookie']
    if (setCookie !== undefined) reply.header('set-cookie', setCookie)
    const type = response.headers['content-type']
    if (typeof type === 'string') reply.type(type)
    reply.header('cache-control', 'no-store')
    if (response.statusCode === 200) {
      // Cached session look-ups still hold the old name and fields.
      app.identities.evict(request.headers.cookie)
      request.log.info({ event: 'profile_update' }, 'user updated')
    }
    return reply.code(response.statusCode).send(text)
  })
}
