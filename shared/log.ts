import type { FastifyServerOptions } from 'fastify'
import type { LogLevel } from './config.ts'

/** What pino must never print: credentials in headers, bodies and error objects. */
export const REDACT_PATHS: readonly string[] = [
  'req.headers.cookie',
  'req.headers.authorization',
  'req.headers["proxy-authorization"]',
  'res.headers["set-cookie"]',
  'headers.cookie',
  'headers.authorization',
  'headers["set-cookie"]',
  '*.password',
  '*.newPassword',
  '*.currentPassword',
  '*.token',
  '*.accessToken',
  '*.refreshToken',
  '*.secret',
  'body.password',
  'body.token'
]

export function loggerOptions (level: LogLevel): NonNullable<FastifyServerOptions['logger']> {
  return {
    level,
    redact: { paths: [...REDACT_PATHS], censor: '[redacted]' }
  }
}
