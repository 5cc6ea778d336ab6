import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'

/** Every error body the project sends. */
export interface ErrorBody {
  error: string
  message: string
}

// Fastify's own codes, turned into the public ones.
const FASTIFY_CODES: Record<string, string> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'bad_request',
  FST_ERR_CTP_BODY_TOO_LARGE: 'payload_too_large',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'bad_request',
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid_json',
  FST_ERR_VALIDATION: 'validation_failed',
  FST_ERR_NOT_FOUND: 'not_found',
  FST_ERR_BAD_URL: 'bad_request',
  FST_ERR_ASYNC_CONSTRAINT: 'bad_request'
}

const STATUS_CODES: Record<number, string> = {
  400: 'bad_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  429: 'rate_limited',
  502: 'bad_gateway',
  503: 'service_unavailable',
  504: 'gateway_timeout'
}

/** The public code of an error: its own code lower-cased when the project defined it, else by status. */
export function publicCode (err: FastifyError, status: number): string {
  const code = err.code
  if (code !== undefined && code in FASTIFY_CODES) return FASTIFY_CODES[code]
  if (isProjectCode(code)) return code.toLowerCase()
  return STATUS_CODES[status] ?? (status >= 500 ? 'internal_error' : 'bad_request')
}

/** Codes defined in the services' `errors.ts`, as opposed to Fastify's, Node's or undici's. */
function isProjectCode (code: string | undefined): code is string {
  return code !== undefined && /^[A-Z][A-Z0-9_]+$/.test(code) && !/^(FST|ERR|UND|E[A-Z]+$)/.test(code)
}

export function errorHandler (this: FastifyInstance, err: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const status = err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500
  if (status >= 500) {
    request.log.error({ err }, 'request failed')
  } else {
    request.log.info({ err: { code: err.code, message: err.message } }, 'request rejected')
  }
  const body: ErrorBody = {
    error: publicCode(err, status),
    // A 5xx's internal message stays in the log; the client gets a sentence that reveals nothing.
    message: status >= 500 && !isProjectCode(err.code) ? 'The server could not complete the request' : err.message
  }
  const headers = (err as FastifyError & { headers?: Record<string, string> }).headers
  if (headers !== undefined) reply.headers(headers)
  reply.code(status).type('application/json; charset=utf-8').send(body)
}

export function notFoundHandler (request: FastifyRequest, reply: FastifyReply): void {
  reply.code(404).send({ error: 'not_found', message: `Route ${request.method} ${request.url.split('?')[0]} not found` } satisfies ErrorBody)
}

/** Installs the project's error format on a Fastify instance. */
export function useErrorFormat (app: FastifyInstance): void {
  app.setErrorHandler(errorHandler)
  app.setNotFoundHandler(notFoundHandler)
}
