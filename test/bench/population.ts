import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { ask } from './children.ts'
import type { SeededReader } from './service-messages.ts'

/* The many-readers population of `authed-many` and `--soak`: real sessions, client tokens, forged cookies. */

const FETCH_CONCURRENCY = 16

async function inParallel<T> (count: number, work: (index: number) => Promise<T>): Promise<T[]> {
  const results = new Array<T>(count)
  let next = 0
  await Promise.all(Array.from({ length: Math.min(FETCH_CONCURRENCY, count) }, async () => {
    for (let index = next++; index < count; index = next++) results[index] = await work(index)
  }))
  return results
}

/** `count` readers with a session each, made by auth-core (seed.ts); `ms` is how long that took. */
export async function seedReaders (authCore: ChildProcess, label: string, count: number, password: string): Promise<{ readers: SeededReader[], emailPrefix: string, ms: number }> {
  const emailPrefix = `bench-${label}-${Date.now()}-`
  const { readers, ms } = await ask(authCore, { type: 'seed', count, emailPrefix, password }, 'seeded')
  return { readers, emailPrefix, ms }
}

export async function unseedReaders (authCore: ChildProcess, readers: readonly SeededReader[]): Promise<number> {
  if (readers.length === 0) return 0
  const { ms } = await ask(authCore, { type: 'unseed', userIds: readers.map((reader) => reader.userId) }, 'unseeded')
  return ms
}

/** Resolves once the clock has entered the next second (a token's `iat` is in whole seconds). */
async function nextSecond (): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 1000 - (Date.now() % 1000) + 5))
}

/** A client token from `GET /auth/jwt` for a session cookie. */
export async function clientToken (gatewayUrl: string, cookie: string): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    const response = await fetch(`${gatewayUrl}/auth/jwt`, { headers: { cookie } })
    if (response.status === 200) return ((await response.json()) as { token: string }).token
    // A starved auth-core (nice 10 on a busy machine) misses the gateway's look-up deadline: 503, try again.
    if (response.status !== 503 || attempt === 5) throw new Error(`GET /auth/jwt answered ${response.status}: ${await response.text()}`)
    await response.body?.cancel()
    await new Promise((resolve) => setTimeout(resolve, 200 * attempt))
  }
}

/**
 * `count` distinct client tokens from `GET /auth/jwt`, taking the readers in turn. A reader's second
 * token is asked for in a later second than its first: two tokens of one user signed in the same
 * second are the same string.
 */
export async function clientTokens (gatewayUrl: string, readers: readonly SeededReader[], count: number): Promise<string[]> {
  const tokens: string[] = []
  for (let wave = 0; tokens.length < count; wave++) {
    if (wave > 0) await nextSecond()
    const size = Math.min(readers.length, count - tokens.length)
    tokens.push(...await inParallel(size, (index) => clientToken(gatewayUrl, readers[index].cookie)))
  }
  if (new Set(tokens).size !== tokens.length) throw new Error('the client tokens are not all distinct')
  return tokens
}

/** Session cookies of the right name and shape that auth-core never issued: get-session answers `null`. */
export function forgedCookies (cookieName: string, count: number): string[] {
  return Array.from({ length: count }, () => `${cookieName}=${encodeURIComponent(`${randomBytes(24).toString('base64url')}.${randomBytes(32).toString('base64')}`)}`)
}

/** The credentials of a mixed population, interleaved in a fixed pseudo-random order. */
export function shuffled<T> (items: readonly T[]): T[] {
  const result = [...items]
  let seed = 0x2545f491
  for (let i = result.length - 1; i > 0; i--) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
    const j = seed % (i + 1)
    ;[result[i], result[j]] = [result[j], result[i]]
  }
  return result
}

/** Checks that a seeded cookie really is a session: the gateway names its user. */
export async function checkSession (gatewayUrl: string, reader: SeededReader): Promise<void> {
  const response = await fetch(`${gatewayUrl}/auth/get-session`, { headers: { cookie: reader.cookie } })
  const body = (await response.json()) as { user?: { id?: string } } | null
  if (response.status !== 200 || body?.user?.id !== reader.userId) throw new Error(`a seeded session does not resolve: ${response.status} ${JSON.stringify(body)}`)
}
