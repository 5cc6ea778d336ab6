import Fastify from 'fastify'
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifyServerOptions } from 'fastify'
import type { Config } from '../shared/config.ts'
import type { Pool } from '../shared/db.ts'
import { useErrorFormat } from '../shared/errors.ts'
import { createAuth } from './auth.ts'
import type { Auth } from './auth.ts'
import validateSessionRoutes from './routes/validate-session.ts'

export interface AuthCoreOptions {
  pool: Pool
  logger?: FastifyServerOptions['logger']
}

declare module 'fastify' {
  interface FastifyInstance {
    auth: Auth
  }
}

export const AUTH_CORE_PREFIX = '/api/auth'
const PUBLIC_AUTH_PATH = '/auth'
const BODYLESS = new Set(['GET', 'HEAD'])

function toWebHeaders (request: FastifyRequest): Headers {
  const headers = new Headers()
  for (const [name, value] of Object.entries(request.headers)) {
    if (value === undefined) continue
    if (Array.isArray(value)) for (const item of value) headers.append(name, item)
    else headers.set(name, value)
  }
  return headers
}

/**
 * better-auth answers errors as `{ code, message }`; the project's format is `{ error, message }`.
 * Both keys are kept so the official better-auth client still sees its `code`.
 */
function toErrorFormat (text: string): string {
  try {
    const body = JSON.parse(text) as unknown
    if (body !== null && typeof body === 'object' && !Array.isArray(body) && !('error' in body)) {
      const { code, message } = body as { code?: unknown, message?: unknown }
      return JSON.stringify({
        error: typeof code === 'string' ? code.toLowerCase() : 'auth_error',
        message: typeof message === 'string' && message !== '' ? message : 'The request was refused',
        ...body
      })
    }
  } catch {}
  return text
}

async function sendWebResponse (reply: FastifyReply, response: Response): Promise<void> {
  reply.code(response.status)
  for (const [name, value] of response.headers) {
    if (name === 'set-cookie' || name === 'content-length') continue
    reply.header(name, value)
  }
  const cookies = response.headers.getSetCookie()
  if (cookies.length > 0) reply.header('set-cookie', cookies)
  let text = await response.text()
  if (response.status >= 400 && (response.headers.get('content-type') ?? '').includes('json')) text = toErrorFormat(text)
  return reply.send(text)
}

/** Better-Auth hosted on Fastify. Never listens: `server.ts` does. */
export async function buildAuthCore (config: Readonly<Config>, options: AuthCoreOptions): Promise<FastifyInstance> {
  const app = Fastify({
    logger: options.logger ?? false,
    // better-auth reads and validates the raw body itself.
    bodyLimit: 64 * 1024
  })
  useErrorFormat(app)
  const auth = createAuth(config, options.pool, app.log)
  app.decorate('auth', auth)

  app.get('/health', async () => ({ status: 'ok' }))
  await app.register(validateSessionRoutes, { pool: options.pool, jwtSecret: config.jwtSecret })

  await app.register(async function betterAuthRoutes (scope) {
    scope.removeAllContentTypeParsers()
    scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => { done(null, body) })

    scope.route({
      method: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'],
      url: `${AUTH_CORE_PREFIX}/*`,
      async handler (request, reply) {
        // better-auth routes on the public path (`PUBLIC_URL/auth/...`) that the browser used.
        const rest = request.url.slice(AUTH_CORE_PREFIX.length)
        const url = new URL(`${PUBLIC_AUTH_PATH}${rest}`, config.publicUrl)
        const body = BODYLESS.has(request.method) || !Buffer.isBuffer(request.body) ? undefined : new Uint8Array(request.body)
        const response = await auth.handler(new Request(url, {
          method: request.method,
          headers: toWebHeaders(request),
          body
        }))
        return sendWebResponse(reply, response)
      }
    })
  })

  return app
}
