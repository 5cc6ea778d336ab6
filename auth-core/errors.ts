import createError from '@fastify/error'
import { errorRegistry } from '../shared/errors.ts'

/*
 * The codes auth-core answers itself. better-auth's own (`{ code, message }`, 4xx) pass through
 * `toErrorFormat` in `app.ts` and are better-auth's to document.
 */
export const NulCharacterError = createError('BAD_REQUEST', 'The request body must not contain NUL characters', 400)

export const AUTH_CORE_ERRORS = errorRegistry('auth-core', [
  { type: NulCharacterError, meaning: 'a string in the body (a value or a key) contains a NUL character, which Postgres cannot store', action: 'remove the NUL' }
])

const NUL_ESCAPE = Buffer.from('\\u0000')
const FORM_NUL = Buffer.from('%00')

function hasNulString (value: unknown): boolean {
  const pending: unknown[] = [value]
  while (pending.length > 0) {
    const current = pending.pop()
    if (typeof current === 'string') {
      if (current.includes('\0')) return true
    } else if (Array.isArray(current)) {
      for (const item of current) pending.push(item)
    } else if (current !== null && typeof current === 'object') {
      for (const [key, item] of Object.entries(current)) {
        if (key.includes('\0')) return true
        pending.push(item)
      }
    }
  }
  return false
}

/**
 * Whether a request body carries a NUL in any string: a raw byte, a JSON `\u0000` escape or a form's
 * `%00`. A body that does not parse is left to better-auth, which refuses it.
 */
export function containsNul (bytes: Uint8Array, contentType: string | undefined): boolean {
  const body = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (body.includes(0)) return true
  const type = (contentType ?? '').split(';')[0].trim().toLowerCase()
  if (type === 'application/x-www-form-urlencoded') {
    if (!body.includes(FORM_NUL)) return false
    for (const [key, value] of new URLSearchParams(body.toString('utf8'))) if (key.includes('\0') || value.includes('\0')) return true
    return false
  }
  // The text `\u0000` is also what an escaped backslash followed by `u0000` looks like: parse to tell.
  if (!body.includes(NUL_ESCAPE)) return false
  try {
    return hasNulString(JSON.parse(body.toString('utf8')))
  } catch {
    return false
  }
}

/** Whether an answer's body is JSON (better-auth's unexpected failures are an empty 500). */
export function isJsonBody (text: string, contentType: string | null): boolean {
  if (contentType === null || !contentType.includes('json')) return false
  try {
    JSON.parse(text)
    return true
  } catch {
    return false
  }
}
