import type { Stack } from '../gateway/cli/stack.ts'
import { cookieFetch, postJson, uniqueEmail } from './helper.ts'

export const PASSWORD = 'correct horse battery'

/** A signed-up reader with a browser-like cookie jar. */
export interface Reader {
  browser: ReturnType<typeof cookieFetch>
  email: string
  userId: string
  /** The raw session cookie, kept after the jar forgets it (sign-out). */
  cookie: string
}

export interface TokenBody { token: string, expiresAt: string }
export interface ValidateBody { user: Record<string, unknown> | null, session?: Record<string, unknown> | null }

/** Signs a new reader up through the gateway (auto sign-in: the jar holds the session). */
export async function signUp (stack: Pick<Stack, 'url'>, extra: Record<string, unknown> = {}): Promise<Reader> {
  const browser = cookieFetch()
  const email = uniqueEmail('reader')
  const response = await postJson(browser, `${stack.url}/auth/signup`, { email, password: PASSWORD, name: 'Token Reader', ...extra })
  if (response.status !== 200) throw new Error(`sign-up answered ${response.status}: ${await response.text()}`)
  const { user } = await response.json() as { user: { id: string } }
  const cookie = [...browser.cookies].map(([key, value]) => `${key}=${value}`).join('; ')
  return { browser, email, userId: user.id, cookie }
}

/** A client token from `GET /auth/jwt` for the reader's session. */
export async function issueToken (stack: Pick<Stack, 'url'>, reader: Reader): Promise<TokenBody> {
  const response = await reader.browser(`${stack.url}/auth/jwt`)
  if (response.status !== 200) throw new Error(`/auth/jwt answered ${response.status}: ${await response.text()}`)
  return response.json() as Promise<TokenBody>
}

export const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` })

/** `GET /api/validate-session` on the gateway or on auth-core. */
export async function validate (url: string, headers: Record<string, string> = {}): Promise<{ status: number, body: ValidateBody }> {
  const response = await fetch(`${url}/api/validate-session`, { headers })
  return { status: response.status, body: await response.json() as ValidateBody }
}
