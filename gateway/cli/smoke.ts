import { parseArgs } from 'node:util'
import { DEFAULT_TOKEN_TTL_SECONDS, JWT_ISSUER } from '../../shared/jwt.ts'

/*
 * `npm run smoke -- --base-url URL --email E --password P [--name N] [--custom-fields JSON] [--json]`
 * Checks a running gateway end to end, the way the docs site uses it. Exit 0 when every step
 * passes, 1 when one fails (named), 2 for bad arguments.
 */

const USAGE = `Usage: npm run smoke -- --base-url URL --email E --password P [options]

Checks a running gateway: health, sign-up (or sign-in when the user exists), sign-in, session,
JWT issuance and claims, a bearer call to /api/validate-session, sign-out, session gone.

  --base-url URL        the gateway, e.g. http://localhost:8000 (required)
  --email E             the test user's e-mail (required; created when missing)
  --password P          the test user's password (required, at least 8 characters)
  --name N              the name used at sign-up (default "Smoke Test")
  --custom-fields JSON  extra sign-up fields as a JSON object, e.g. '{"tier":"free"}'
  --origin URL          the Origin header sent (default: PUBLIC_URL's origin, as /health
                        tells it; it must be that or one of ALLOWED_ORIGINS)
  --timeout MS          per-request timeout in milliseconds (default 10000)
  --json                print a JSON report instead of one line per step
  -h, --help            this text
`

const DEFAULT_NAME = 'Smoke Test'
const DEFAULT_TIMEOUT_MS = 10_000
// The token's expiry may differ from iat + 7 days by clock skew between this machine and the gateway.
const EXPIRY_SLACK_SECONDS = 300

interface SmokeOptions {
  baseUrl: string
  email: string
  password: string
  name: string
  customFields: Record<string, unknown>
  /** The Origin sent; undefined: PUBLIC_URL's, learnt from /health. */
  origin: string | undefined
  timeoutMs: number
  json: boolean
}

interface StepResult {
  step: string
  ok: boolean
  ms: number
  detail: string
}

interface SmokeReport {
  ok: boolean
  baseUrl: string
  email: string
  /** The first failing step, or null. */
  failedStep: string | null
  steps: StepResult[]
}

class UsageError extends Error {}

function parseOptions (argv: string[]): SmokeOptions | 'help' {
  let values
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        'base-url': { type: 'string' },
        email: { type: 'string' },
        password: { type: 'string' },
        name: { type: 'string' },
        'custom-fields': { type: 'string' },
        origin: { type: 'string' },
        timeout: { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false }
      }
    }))
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
  if (values.help === true) return 'help'
  const required = (name: 'base-url' | 'email' | 'password'): string => {
    const value = values[name]
    if (value === undefined || value === '') throw new UsageError(`--${name} is required`)
    return value
  }
  const rawBase = required('base-url')
  let base: URL
  try {
    base = new URL(rawBase)
  } catch {
    throw new UsageError(`--base-url must be an absolute http(s) URL (got ${JSON.stringify(rawBase)})`)
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new UsageError('--base-url must be an http(s) URL')
  const email = required('email')
  if (!/^[^\s@]+@[^\s@]+$/.test(email)) throw new UsageError(`--email must be an e-mail address (got ${JSON.stringify(email)})`)
  const password = required('password')
  let customFields: Record<string, unknown> = {}
  if (values['custom-fields'] !== undefined) {
    let parsed: unknown
    try {
      parsed = JSON.parse(values['custom-fields'])
    } catch {
      throw new UsageError('--custom-fields must be a JSON object')
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new UsageError('--custom-fields must be a JSON object')
    customFields = parsed as Record<string, unknown>
  }
  let origin: string | undefined
  if (values.origin !== undefined) {
    try {
      origin = new URL(values.origin).origin
    } catch {
      throw new UsageError(`--origin must be an origin such as https://docs.example.com (got ${JSON.stringify(values.origin)})`)
    }
  }
  let timeoutMs = DEFAULT_TIMEOUT_MS
  if (values.timeout !== undefined) {
    if (!/^\d+$/.test(values.timeout) || Number(values.timeout) < 1) throw new UsageError('--timeout must be a positive number of milliseconds')
    timeoutMs = Number(values.timeout)
  }
  return {
    baseUrl: base.toString().replace(/\/+$/, ''),
    email,
    password,
    name: values.name ?? DEFAULT_NAME,
    customFields,
    origin,
    timeoutMs,
    json: values.json === true
  }
}

/** A browser's cookie handling for one site: enough for better-auth's session cookie. */
class CookieJar {
  readonly #cookies = new Map<string, string>()

  header (): string | undefined {
    return this.#cookies.size === 0 ? undefined : [...this.#cookies].map(([name, value]) => `${name}=${value}`).join('; ')
  }

  store (response: Response): void {
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(';')
      const at = pair.indexOf('=')
      if (at === -1) continue
      const name = pair.slice(0, at).trim()
      const value = pair.slice(at + 1).trim()
      const expired = value === '' || attributes.some((a) => /^\s*max-age=(0|-\d+)\s*$/i.test(a))
      if (expired) this.#cookies.delete(name)
      else this.#cookies.set(name, value)
    }
  }
}

interface Answer {
  status: number
  body: unknown
  text: string
}

class StepFailed extends Error {}

function fail (message: string): never {
  throw new StepFailed(message)
}

function record (value: unknown): Record<string, unknown> | null {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? value as Record<string, unknown> : null
}

function describe (answer: Answer): string {
  const body = record(answer.body)
  const reason = typeof body?.message === 'string' ? body.message : answer.text.slice(0, 120)
  return `HTTP ${answer.status}${reason === '' ? '' : `: ${reason}`}`
}

/** The claims of a JWT, read without its key: the signature is checked by the gateway (bearer call). */
function decodeClaims (token: string): Record<string, unknown> {
  const parts = token.split('.')
  if (parts.length !== 3) fail('the token is not a JWT (three dot-separated parts)')
  let header: Record<string, unknown> | null
  let claims: Record<string, unknown> | null
  try {
    header = record(JSON.parse(Buffer.from(parts[0], 'base64url').toString('utf8')))
    claims = record(JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8')))
  } catch {
    return fail('the token header or payload is not base64url JSON')
  }
  if (header?.alg !== 'HS256') fail(`the token's alg is ${JSON.stringify(header?.alg)}, expected "HS256"`)
  if (claims === null) return fail('the token payload is not a JSON object')
  return claims
}

async function runSmoke (options: SmokeOptions, onStep: (result: StepResult) => void = () => {}): Promise<SmokeReport> {
  const jar = new CookieJar()
  const steps: StepResult[] = []
  // The gateway's own origin (PUBLIC_URL) unless told otherwise: whatever address it is reached
  // on, that is the origin its cookie writes are accepted from.
  let origin = options.origin ?? new URL(options.baseUrl).origin
  let userId = ''
  let token = ''

  const call = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}, useCookies = true): Promise<Answer> => {
    const sent: Record<string, string> = { accept: 'application/json', origin, ...headers }
    const cookie = useCookies ? jar.header() : undefined
    if (cookie !== undefined) sent.cookie = cookie
    if (body !== undefined) sent['content-type'] = 'application/json'
    const response = await fetch(`${options.baseUrl}${path}`, {
      method,
      headers: sent,
      body: body === undefined ? undefined : JSON.stringify(body),
      redirect: 'manual',
      signal: AbortSignal.timeout(options.timeoutMs)
    })
    if (useCookies) jar.store(response)
    const text = await response.text()
    let parsed: unknown = null
    try {
      parsed = text === '' ? null : JSON.parse(text)
    } catch {}
    return { status: response.status, body: parsed, text }
  }

  const sessionUser = async (): Promise<Record<string, unknown> | null> => {
    const answer = await call('GET', '/auth/get-session')
    if (answer.status !== 200) fail(describe(answer))
    return record(record(answer.body)?.user)
  }

  const checks: Array<[string, () => Promise<string>]> = [
    ['health', async () => {
      const answer = await call('GET', '/health', undefined, {}, false)
      const body = record(answer.body)
      if (answer.status !== 200 || body?.status !== 'ok') fail(describe(answer))
      const publicOrigin = typeof body.publicUrl === 'string' && /^https?:\/\//.test(body.publicUrl) ? new URL(body.publicUrl).origin : undefined
      if (options.origin === undefined && publicOrigin !== undefined) origin = publicOrigin
      return publicOrigin === undefined ? 'gateway is up' : `gateway is up, public URL ${String(body.publicUrl)}${origin === publicOrigin ? '' : `, sending Origin ${origin}`}`
    }],
    ['sign-up', async () => {
      const answer = await call('POST', '/auth/sign-up/email', { ...options.customFields, email: options.email, password: options.password, name: options.name })
      if (answer.status === 200) return 'user created'
      const code = record(answer.body)?.code
      // Not a failure: a smoke test is run again and again with the same account.
      if (answer.status === 422 || code === 'USER_ALREADY_EXISTS' || code === 'USER_ALREADY_EXISTS_USE_ANOTHER_EMAIL') return 'user exists, signing in'
      return fail(describe(answer))
    }],
    ['sign-in', async () => {
      const answer = await call('POST', '/auth/sign-in/email', { email: options.email, password: options.password })
      if (answer.status !== 200) fail(describe(answer))
      if (jar.header() === undefined) fail('no session cookie came back')
      return 'session cookie set'
    }],
    ['get-session', async () => {
      const user = await sessionUser()
      if (user === null) fail('no session for the cookie')
      if (user.email !== options.email.toLowerCase()) fail(`the session is for ${String(user.email)}`)
      userId = String(user.id)
      return `user ${userId}`
    }],
    ['jwt', async () => {
      const answer = await call('GET', '/auth/jwt')
      if (answer.status !== 200) fail(describe(answer))
      const body = record(answer.body)
      if (typeof body?.token !== 'string') fail('no token in the answer')
      token = body.token
      const claims = decodeClaims(token)
      const now = Math.floor(Date.now() / 1000)
      if (claims.iss !== JWT_ISSUER) fail(`iss is ${JSON.stringify(claims.iss)}, expected "${JWT_ISSUER}"`)
      if (claims.sub !== userId) fail(`sub is ${JSON.stringify(claims.sub)}, expected the session's user ${userId}`)
      if (claims.email !== options.email.toLowerCase()) fail(`email is ${JSON.stringify(claims.email)}`)
      if (typeof claims.exp !== 'number' || typeof claims.iat !== 'number') fail('exp or iat missing')
      if (claims.exp <= now) fail('the token is already expired')
      if (Math.abs(claims.exp - claims.iat - DEFAULT_TOKEN_TTL_SECONDS) > EXPIRY_SLACK_SECONDS) fail(`the token lives ${claims.exp - claims.iat} s, expected 7 days`)
      if (typeof body.expiresAt !== 'string' || Math.abs(Date.parse(body.expiresAt) - claims.exp * 1000) > 1000) fail('expiresAt does not match exp')
      return `HS256, iss ${JWT_ISSUER}, expires ${new Date(claims.exp * 1000).toISOString()}`
    }],
    ['bearer', async () => {
      const answer = await call('GET', '/api/validate-session', undefined, { authorization: `Bearer ${token}` }, false)
      if (answer.status !== 200) fail(describe(answer))
      const user = record(record(answer.body)?.user)
      if (user === null) fail('validate-session does not accept the token')
      if (user.id !== userId) fail(`validate-session names user ${String(user.id)}`)
      return 'validate-session accepts the token'
    }],
    ['sign-out', async () => {
      const answer = await call('POST', '/auth/sign-out', {})
      if (answer.status !== 200) fail(describe(answer))
      return 'signed out'
    }],
    ['session-gone', async () => {
      if (jar.header() !== undefined) fail('the session cookie was not cleared')
      if (await sessionUser() !== null) fail('a session is still there')
      return 'no session'
    }]
  ]

  let failedStep: string | null = null
  for (const [step, check] of checks) {
    if (failedStep !== null) break
    const started = performance.now()
    let result: StepResult
    try {
      const detail = await check()
      result = { step, ok: true, ms: Math.round(performance.now() - started), detail }
    } catch (err) {
      const detail = err instanceof StepFailed
        ? err.message
        : (err as Error).name === 'TimeoutError'
            ? `no answer within ${options.timeoutMs} ms`
            : `request failed: ${(err as Error).message}${describeCause(err)}`
      result = { step, ok: false, ms: Math.round(performance.now() - started), detail }
      failedStep = step
    }
    steps.push(result)
    onStep(result)
  }
  return { ok: failedStep === null, baseUrl: options.baseUrl, email: options.email, failedStep, steps }
}

function describeCause (err: unknown): string {
  const cause = (err as { cause?: { code?: unknown, message?: unknown } }).cause
  if (cause === undefined) return ''
  return ` (${typeof cause.code === 'string' ? cause.code : String(cause.message)})`
}

function formatStep (result: StepResult): string {
  return `${result.ok ? '✓' : '✗'} ${result.step.padEnd(12)} ${String(result.ms).padStart(5)} ms  ${result.detail}`
}

async function main (): Promise<number> {
  let options: SmokeOptions | 'help'
  try {
    options = parseOptions(process.argv.slice(2))
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    process.stderr.write(`smoke: ${err.message}\n\n${USAGE}`)
    return 2
  }
  if (options === 'help') {
    process.stdout.write(USAGE)
    return 0
  }
  const json = options.json
  if (!json) process.stdout.write(`smoke check of ${options.baseUrl} as ${options.email}\n`)
  const report = await runSmoke(options, (result) => {
    if (!json) process.stdout.write(`${formatStep(result)}\n`)
  })
  if (json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`)
  else if (report.ok) process.stdout.write(`all ${report.steps.length} steps passed\n`)
  else process.stdout.write(`FAILED at step "${report.failedStep ?? ''}"\n`)
  return report.ok ? 0 : 1
}

process.exitCode = await main()
