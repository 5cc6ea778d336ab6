/** What every call of the client reports when the gateway's answer is not a success. */

/** Every failure, as the gateway sends it (`{ error, message }`) plus the HTTP status; 0 when no answer came. */
export interface GatewayError {
  error: string
  message: string
  status: number
}

/** No answer came: the gateway could not be reached (or CORS refused the page). */
export const NETWORK_ERROR = 'network_error'
/** An answer came that is not the gateway's `{ error, message }`. */
export const UNEXPECTED_RESPONSE = 'unexpected_response'

export function messageOf (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/** The gateway's error body. */
export function isErrorBody (body: unknown): body is { error: string, message: string } {
  if (typeof body !== 'object' || body === null) return false
  const { error, message } = body as Record<string, unknown>
  return typeof error === 'string' && typeof message === 'string'
}
