import { isErrorBody, messageOf, NETWORK_ERROR, UNEXPECTED_RESPONSE } from './failure.ts'
import type { GatewayError } from './failure.ts'

export type GatewayResult<T> =
  | { data: T, error: null }
  | { data: null, error: GatewayError }

async function readBody (response: Response): Promise<unknown> {
  const text = await response.text()
  if (text === '') return null
  const type = response.headers.get('content-type') ?? ''
  if (!/\bjson\b/i.test(type)) return text
  return JSON.parse(text) as unknown
}

/** A gateway answer as a result: its JSON on success, its `{ error, message }` (and status) otherwise. */
export async function resultOf<T> (response: Response): Promise<GatewayResult<T>> {
  let parsed: unknown
  try {
    parsed = await readBody(response)
  } catch (err) {
    return { data: null, error: { error: UNEXPECTED_RESPONSE, message: `The gateway answered ${response.status} with a body that could not be read: ${messageOf(err)}`, status: response.status } }
  }
  if (response.ok) return { data: parsed as T, error: null }
  if (isErrorBody(parsed)) return { data: null, error: { error: parsed.error, message: parsed.message, status: response.status } }
  return { data: null, error: { error: UNEXPECTED_RESPONSE, message: `The gateway answered ${response.status} ${response.statusText}`.trim(), status: response.status } }
}

/** A fetch that failed before any answer, as a result. */
export function unreachable (err: unknown): { data: null, error: GatewayError } {
  return { data: null, error: { error: NETWORK_ERROR, message: `The gateway could not be reached: ${messageOf(err)}`, status: 0 } }
}

/** The request of a JSON call: `accept`, and a JSON body when there is one. */
export function jsonInit (method: string, body: unknown, headers: Record<string, string> = {}): RequestInit {
  if (body === undefined) return { method, headers: { accept: 'application/json', ...headers } }
  return { method, headers: { accept: 'application/json', 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) }
}

/** Checks the `baseURL` option and drops its final slashes. */
export function gatewayOrigin (caller: string, baseURL: unknown): string {
  if (typeof baseURL !== 'string' || !/^https?:\/\//.test(baseURL)) {
    throw new TypeError(`${caller}: baseURL must be an http(s) URL, got ${JSON.stringify(baseURL)}`)
  }
  return baseURL.replace(/\/+$/, '')
}
