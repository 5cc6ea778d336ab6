import type { FastifyRequest, FastifyServerOptions } from 'fastify'
import type { LogLevel } from './config.ts'

/** What pino must never print: credentials in headers, bodies and error objects. */
export const REDACT_PATHS: readonly string[] = [
  'req.headers.cookie',
  'req.headers.authorization',
  'req.headers["proxy-authorization"]',
  'req.headers["x-api-key"]',
  'res.headers["set-cookie"]',
  'headers.cookie',
  'headers.authorization',
  'headers["x-api-key"]',
  'headers["set-cookie"]',
  '*.password',
  '*.newPassword',
  '*.currentPassword',
  '*.token',
  '*.accessToken',
  '*.refreshToken',
  '*.secret',
  'body.password',
  'body.token',
  'body.key'
]

const CENSOR = '[redacted]'

// better-auth's one token-in-path endpoint, `/reset-password/:token`. Matched without regard to case
// or repeated slashes so that no spelling a router might still accept slips through.
const RESET_TOKEN = /(\/reset-password\/+)[^/]*/gi

/**
 * A request URL fit for the log: the path and the query's parameter names, but no query value, no
 * fragment and no password-reset token (tokens for e-mail links travel in these).
 */
export function redactUrl (url: string): string {
  const hash = url.indexOf('#')
  const beforeHash = hash === -1 ? url : url.slice(0, hash)
  const mark = beforeHash.indexOf('?')
  const path = (mark === -1 ? beforeHash : beforeHash.slice(0, mark)).replace(RESET_TOKEN, `$1${CENSOR}`)
  let redacted = path
  if (mark !== -1) {
    const query = beforeHash.slice(mark + 1).split('&').map((part) => {
      const equals = part.indexOf('=')
      return equals === -1 ? part : `${part.slice(0, equals)}=${CENSOR}`
    })
    redacted += `?${query.join('&')}`
  }
  return hash === -1 ? redacted : `${redacted}#${CENSOR}`
}

/** Fastify's own request serializer, with the URL redacted. */
function serializeRequest (req: FastifyRequest): Record<string, unknown> {
  const version = req.headers['accept-version']
  return {
    method: req.method,
    url: typeof req.url === 'string' ? redactUrl(req.url) : req.url,
    version: typeof version === 'string' ? version : undefined,
    host: req.host,
    remoteAddress: req.ip,
    remotePort: req.socket?.remotePort
  }
}

/** The object form of Fastify's `logger` option (so callers can spread it and add a `stream`). */
export type LoggerOptions = Exclude<FastifyServerOptions['logger'], boolean | undefined>

export function loggerOptions (level: LogLevel): LoggerOptions {
  return {
    level,
    redact: { paths: [...REDACT_PATHS], censor: CENSOR },
    serializers: { req: serializeRequest }
  }
}
