import { randomBytes } from 'node:crypto'
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { join, resolve } from 'node:path'

/** The type of a custom better-auth user field declared in `AUTH_USER_FIELDS`. */
export type UserFieldType = 'string' | 'number' | 'boolean'

export interface UserField {
  name: string
  type: UserFieldType
  /** A readonly field (e.g. `role`) can never be set by a client. */
  readonly: boolean
}

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'

/** What both services read. */
export interface CommonConfig {
  production: boolean
  /** Unset: an embedded Postgres (PGlite) is started in `dataDir`. */
  databaseUrl: string | undefined
  /** Postgres `statement_timeout` of every pool, in milliseconds: no query runs longer. @default 5 seconds */
  databaseStatementTimeout: number
  /** Postgres `idle_in_transaction_session_timeout` of every pool, in milliseconds. @default 30 seconds */
  databaseIdleInTransactionTimeout: number
  /** @default './.data' */
  dataDir: string
  /** HS256 key of client tokens; both services verify them (auth-core's validate-session too). */
  jwtSecret: string
  /** How `GET /auth/jwt` client tokens are signed: HS256 with `JWT_SECRET`, or EdDSA (JWKS). @default 'HS256' */
  jwtAlg: JwtAlg
  /** @default 'http://localhost:8000' */
  publicUrl: string
  /** @default ['http://localhost:3000'] */
  allowedOrigins: readonly string[]
  userFields: readonly UserField[]
  /** @default 'info' */
  logLevel: LogLevel
  /**
   * Shared state of several replicas: the gateway's rate-limit counters and revocation broadcast,
   * auth-core's sessions and verification values (Better-Auth `secondaryStorage`). Unset: per process.
   */
  redisUrl: string | undefined
  /** Admin routes refused to an admin without two-factor sign-in. @default true */
  adminRequire2fa: boolean
  /** Prometheus exposition (`GET /metrics`) on a port of its own, never the service's. Unset: no metrics. */
  metricsPort: number | undefined
  /** Where the metrics port listens. @default '127.0.0.1' */
  metricsHost: string
  /** `OTEL_EXPORTER_OTLP_ENDPOINT`: the OTLP/HTTP collector traces go to (`/v1/traces` added). Unset: no tracing. */
  otelEndpoint: string | undefined
  /** `OTEL_SERVICE_NAME`: the `service.name` of this process's spans. @default 'auth-gateway' / 'auth-core' */
  otelServiceName: string | undefined
  /**
   * The share of requests traced, from OpenTelemetry's `OTEL_TRACES_SAMPLER` (`always_on`,
   * `always_off`, `traceidratio`, or their `parentbased_` forms) and `OTEL_TRACES_SAMPLER_ARG`. @default 1
   */
  otelSampleRatio: number
}

/** What the gateway reads (it never needs `BETTER_AUTH_SECRET`). */
export interface GatewayConfig extends CommonConfig {
  /** @default 8000 */
  port: number
  /** More access rules for the app upstream, JSON (gateway/access/rules-file.ts); read and checked when the gateway is built. */
  accessRulesFile: string | undefined
  /** @default '127.0.0.1' */
  host: string
  /** @default 'http://127.0.0.1:3001' */
  authCoreUrl: string
  ragUpstreamUrl: string | undefined
  appUpstreamUrl: string | undefined
  /** @default 5 */
  authRateLimitMax: number
  /** Milliseconds. @default 15 minutes */
  authRateLimitWindow: number
  /** @default 300 */
  rateLimitMax: number
  /** Milliseconds. @default 1 minute */
  rateLimitWindow: number
  /** @default 30 */
  ragRateLimitAnon: number
  /** @default 120 */
  ragRateLimitUser: number
  /** Requests per `rateLimitWindow` per API key, on every route it opens (instead of the user's RAG budget). @default 120 */
  apiKeyRateLimit: number
  /** @default '1' */
  consentVersion: string
  /**
   * Whose `X-Forwarded-For` to believe: nobody (`false`, the socket is the client), this many
   * hops, or these proxy addresses/CIDRs. The client is the rightmost entry not trusted. @default false
   */
  trustProxy: TrustProxy
  /** Milliseconds. @default 5 seconds */
  sessionCacheTtl: number
  /** `UPSTREAM_TIMEOUT`, ms: one deadline per RAG or app call (queueing, connect, headers, buffered body). @default 30 seconds */
  upstreamTimeout: number
  /** `UPSTREAM_IDLE_TIMEOUT`, ms: the longest silence inside a streamed upstream answer. @default 30 seconds */
  upstreamIdleTimeout: number
  /** `UPSTREAM_MAX_BUFFERED_BYTES`: longer upstream answers are streamed. @default 1 MiB */
  upstreamMaxBufferedBytes: number
  /** `REQUEST_TIMEOUT`, ms: a client's whole request (headers and body) must arrive within it, else 408. @default 10 seconds */
  requestTimeout: number
  /** `HEADERS_TIMEOUT`, ms: a client's request headers must arrive within it, else 408; at most `requestTimeout`. @default 5 seconds */
  headersTimeout: number
  /** `MAX_CONNECTIONS`: client connections open at once; further ones are refused. @default 10000 */
  maxConnections: number
  /** `API_DOCS`: `GET /openapi.json` and `GET /docs` are served. @default true, false when NODE_ENV=production */
  apiDocs: boolean
  /** How each upstream's identity tokens are signed and whom they name. */
  upstreamTokens: Readonly<Record<UpstreamName, UpstreamTokenConfig>>
}

/** What auth-core reads. */
export interface AuthCoreConfig extends CommonConfig {
  betterAuthSecret: string
  /** @default 3001 */
  authCorePort: number
  /** Interface auth-core listens on; loopback unless it runs in its own container. @default '127.0.0.1' */
  authCoreHost: string
  /**
   * `SameSite` of the session cookie. `none` (with `Secure` and `Partitioned`) only for a docs site on
   * another site than the gateway; it needs an https `PUBLIC_URL`. @default 'lax'
   */
  cookieSameSite: 'lax' | 'strict' | 'none'
  /**
   * Outgoing mail server (`smtp://user:pass@host:587`, `smtps://…`). Unset outside production: every
   * mail is written to `DATA_DIR/outbox/` as an `.eml` file. auth-core refuses to start without it in
   * production (the migration and key tools do not need it).
   */
  smtpUrl: string | undefined
  /** The `From` of every mail. @default 'auth-gateway <no-reply@localhost>' */
  mailFrom: string
  /** Sign-in is refused until the address is verified. @default true in production, false otherwise */
  requireEmailVerification: boolean
  /** better-auth's impersonation (`/auth/admin/impersonate-user`); logged when used. @default false */
  adminImpersonation: boolean
  /** Social sign-in: each provider whose client id and secret are both set (docs/social-sign-in.md). */
  socialProviders: SocialProviders
  /** Any OpenID Connect provider, by discovery (`OIDC_ISSUER`); unset: none. */
  oidc: OidcProviderConfig | undefined
  /**
   * Configured providers whose addresses count as verified when linking to an existing account,
   * even without `email_verified` (the account's own address must still be verified). @default none
   */
  trustedProviders: readonly string[]
}

export interface OAuthClientConfig {
  clientId: string
  clientSecret: string
}

export interface SocialProviders {
  github?: OAuthClientConfig
  google?: OAuthClientConfig
}

export interface OidcProviderConfig extends OAuthClientConfig {
  /** The issuer; its discovery document is `<issuer>/.well-known/openid-configuration`. */
  issuer: string
  /** The provider's id in better-auth's routes (`/auth/oauth2/callback/<id>`). @default 'oidc' */
  providerId: string
  /** @default ['openid', 'email', 'profile'] */
  scopes: readonly string[]
  /**
   * A claim (ID token or userinfo) whose value becomes the user's `role` at each sign-in with this
   * provider: a role name, a comma-separated list or an array of names; missing or empty: `user`.
   * Unset: the provider decides no role (roles are the gateway's own).
   */
  roleClaim: string | undefined
}

/** Both services in one process (`npm start`, the tests, the CLIs). */
export type Config = GatewayConfig & AuthCoreConfig

/** Which service a configuration is loaded for: each validates only what it reads. */
export type Service = 'gateway' | 'auth-core'

export type Env = Record<string, string | undefined>

export type JwtAlg = 'HS256' | 'EdDSA'
/** The upstreams the gateway forwards to; also the `aud` of their identity tokens. */
export type UpstreamName = 'rag' | 'app'
export const UPSTREAM_NAMES: readonly UpstreamName[] = ['rag', 'app']

export interface UpstreamTokenConfig {
  /** The upstream's own HS256 key (`<NAME>_UPSTREAM_JWT_SECRET`); unset: EdDSA with `aud`, keys at `/auth/jwks`. */
  jwtSecret: string | undefined
  /** `pseudonymous`: `sub` and `X-User-Id` are a keyed hash of user and audience, no email or name. @default 'user' */
  subject: 'user' | 'pseudonymous'
}

export const DEFAULT_DATA_DIR = './.data'
export const DEFAULT_PORT = 8000
export const DEFAULT_HOST = '127.0.0.1'
export const DEFAULT_AUTH_CORE_PORT = 3001
export const DEFAULT_ALLOWED_ORIGINS = 'http://localhost:3000'
export const MIN_SECRET_LENGTH = 32
const SECRETS_FILE = 'secrets.json'
const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

/** Thrown for a missing or malformed variable; the message is the one line printed at startup. */
export class ConfigError extends Error {
  readonly variable: string
  constructor (variable: string, expected: string, got?: string) {
    super(`Invalid configuration: ${variable} ${expected}${got === undefined ? '' : ` (got ${JSON.stringify(got)})`}`)
    this.name = 'ConfigError'
    this.variable = variable
  }
}

function present (env: Env, name: string): string | undefined {
  const value = env[name]
  if (value === undefined) return undefined
  const trimmed = value.trim()
  return trimmed === '' ? undefined : trimmed
}

function integer (env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = present(env, name)
  if (raw === undefined) return fallback
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new ConfigError(name, `must be an integer between ${min} and ${max}`, raw)
  }
  return Number(raw)
}

/** `TRUST_PROXY`: `false`, a hop count, or the addresses/CIDRs of the proxies in front of the gateway. */
export type TrustProxy = false | number | readonly string[]

export const MAX_PROXY_HOPS = 255

function proxyAddress (name: string, entry: string): string {
  const slash = entry.indexOf('/')
  const family = isIP(slash === -1 ? entry : entry.slice(0, slash))
  if (family === 0) throw new ConfigError(name, 'must list IP addresses or CIDRs such as 10.0.0.0/8 or ::1', entry)
  if (slash === -1) return entry
  const prefix = entry.slice(slash + 1)
  const bits = family === 4 ? 32 : 128
  if (!/^\d{1,3}$/.test(prefix) || Number(prefix) > bits) throw new ConfigError(name, `has a CIDR prefix outside /1 to /${bits}`, entry)
  if (Number(prefix) === 0) throw new ConfigError(name, "cannot trust a /0 range: it would trust any client's X-Forwarded-For", entry)
  return entry
}

/**
 * `true` is refused rather than mapped: trusting every hop makes the leftmost `X-Forwarded-For`
 * entry, which the client itself writes, the client address.
 */
function trustProxy (env: Env, name: string): TrustProxy {
  const raw = present(env, name)
  if (raw === undefined || raw.toLowerCase() === 'false') return false
  if (/^(true|yes|on)$/i.test(raw)) {
    throw new ConfigError(name, "must be false, a hop count such as 1, or the proxy addresses/CIDRs; true would trust any client's X-Forwarded-For", raw)
  }
  if (/^\d+$/.test(raw)) {
    if (Number(raw) < 1 || Number(raw) > MAX_PROXY_HOPS) throw new ConfigError(name, `must be false or a hop count between 1 and ${MAX_PROXY_HOPS}`, raw)
    return Number(raw)
  }
  const entries = raw.split(',').map((part) => part.trim()).filter((part) => part !== '')
  if (entries.length === 0) throw new ConfigError(name, 'must be false, a hop count such as 1, or the proxy addresses/CIDRs', raw)
  return Object.freeze(entries.map((entry) => proxyAddress(name, entry)))
}

function httpUrl (env: Env, name: string, fallback?: string): string | undefined {
  const raw = present(env, name) ?? fallback
  if (raw === undefined) return undefined
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    throw new ConfigError(name, 'must be an absolute http(s) URL', raw)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError(name, 'must be an absolute http(s) URL', raw)
  }
  return raw.replace(/\/+$/, '')
}

function postgresUrl (env: Env, name: string): string | undefined {
  const raw = present(env, name)
  if (raw === undefined) return undefined
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    throw new ConfigError(name, 'must be a postgres:// connection URL', raw.replace(/:[^:@/]*@/, ':***@'))
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new ConfigError(name, 'must be a postgres:// connection URL', `${url.protocol}//…`)
  }
  return raw
}

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  millisecond: 1,
  s: 1000,
  sec: 1000,
  second: 1000,
  m: 60_000,
  min: 60_000,
  minute: 60_000,
  h: 3_600_000,
  hour: 3_600_000,
  d: 86_400_000,
  day: 86_400_000
}

/** Parses `"15 minutes"`, `"5s"`, `"1 minute"`, `"500 ms"` or a bare number of milliseconds. */
export function parseDuration (text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim())
  if (match === null) return undefined
  const amount = Number(match[1])
  let unit = match[2].toLowerCase()
  if (unit === '') return Math.round(amount)
  if (!(unit in DURATION_UNITS) && unit.endsWith('s')) unit = unit.slice(0, -1)
  const factor = DURATION_UNITS[unit]
  return factor === undefined ? undefined : Math.round(amount * factor)
}

function duration (env: Env, name: string, fallback: string): number {
  const raw = present(env, name) ?? fallback
  const ms = parseDuration(raw)
  if (ms === undefined || ms <= 0) {
    throw new ConfigError(name, 'must be a positive duration such as "15 minutes" or "5 seconds"', raw)
  }
  return ms
}

// Postgres takes its timeouts in milliseconds as a 32-bit integer.
const MAX_DATABASE_TIMEOUT_MS = 2_147_483_647

function databaseTimeout (env: Env, name: string, fallback: string): number {
  const ms = duration(env, name, fallback)
  if (ms > MAX_DATABASE_TIMEOUT_MS) throw new ConfigError(name, 'must be at most 24 days (Postgres takes milliseconds as a 32-bit integer)', present(env, name))
  return ms
}

function origins (env: Env, name: string, fallback: string): string[] {
  const raw = present(env, name) ?? fallback
  return raw.split(',').map((part) => part.trim()).filter((part) => part !== '').map((origin) => {
    let url: URL
    try {
      url = new URL(origin)
    } catch {
      throw new ConfigError(name, 'must be a comma-separated list of origins such as https://docs.example.com', origin)
    }
    if (url.origin !== origin.replace(/\/$/, '') || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
      throw new ConfigError(name, 'must list bare origins (scheme://host[:port], no path)', origin)
    }
    return url.origin
  })
}

const FIELD_NAME = /^[a-zA-Z][a-zA-Z0-9_]{0,62}$/
// Names better-auth already owns on its user table.
const RESERVED_FIELDS = new Set(['id', 'name', 'email', 'emailVerified', 'image', 'createdAt', 'updatedAt', 'password'])

/** Parses `AUTH_USER_FIELDS`: `name:type[:readonly]`, space-separated. */
export function parseUserFields (raw: string): UserField[] {
  const seen = new Set<string>()
  return raw.split(/\s+/).filter((part) => part !== '').map((spec) => {
    const [name, type, flag, ...rest] = spec.split(':')
    const bad = (expected: string): never => { throw new ConfigError('AUTH_USER_FIELDS', expected, spec) }
    if (name === undefined || !FIELD_NAME.test(name)) bad('entries must be name:type[:readonly] with a letter-first name')
    if (RESERVED_FIELDS.has(name)) bad(`cannot redeclare the built-in user field "${name}"`)
    if (seen.has(name)) bad(`declares "${name}" twice`)
    if (type !== 'string' && type !== 'number' && type !== 'boolean') bad('types must be string, number or boolean')
    if ((flag !== undefined && flag !== 'readonly') || rest.length > 0) bad('accepts only the flag "readonly"')
    seen.add(name)
    return { name, type: type as UserFieldType, readonly: flag === 'readonly' }
  })
}

interface DevSecrets {
  betterAuthSecret: string
  jwtSecret: string
}

/** Development secrets are generated once and kept in `DATA_DIR`, so sessions survive restarts. */
function loadDevSecrets (dataDir: string): DevSecrets {
  const file = join(dataDir, SECRETS_FILE)
  try {
    const stored = JSON.parse(readFileSync(file, 'utf8')) as Partial<DevSecrets>
    if (typeof stored.betterAuthSecret === 'string' && typeof stored.jwtSecret === 'string') {
      return { betterAuthSecret: stored.betterAuthSecret, jwtSecret: stored.jwtSecret }
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' && !(err instanceof SyntaxError)) throw err
  }
  const secrets: DevSecrets = {
    betterAuthSecret: randomBytes(32).toString('base64url'),
    jwtSecret: randomBytes(32).toString('base64url')
  }
  // The folder holds the secrets and the embedded database: its owner's only.
  mkdirSync(dataDir, { recursive: true, mode: 0o700 })
  chmodSync(dataDir, 0o700)
  // 'wx' fails if another process won the race; then read what it wrote.
  try {
    writeFileSync(file, JSON.stringify(secrets, null, 2), { mode: 0o600, flag: 'wx' })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return loadDevSecrets(dataDir)
    throw err
  }
  return secrets
}

function secret (env: Env, name: string, production: boolean, generated: () => string): string {
  const raw = present(env, name)
  if (raw === undefined) {
    if (production) throw new ConfigError(name, `is required when NODE_ENV=production (at least ${MIN_SECRET_LENGTH} characters)`)
    return generated()
  }
  if (raw.length < MIN_SECRET_LENGTH) {
    // The value itself is a secret: say how long it is, never what it is.
    throw new ConfigError(name, `must be at least ${MIN_SECRET_LENGTH} characters long`, `${raw.length} characters`)
  }
  return raw
}

/**
 * Each upstream's identity-token settings. An upstream's own secret must be its alone: never
 * `JWT_SECRET` (the gateway would accept what the upstream mints), never another upstream's.
 */
function upstreamTokens (env: Env, jwtSecret: string, betterAuthSecret: string | undefined = present(env, 'BETTER_AUTH_SECRET')): Record<UpstreamName, UpstreamTokenConfig> {
  const result = {} as Record<UpstreamName, UpstreamTokenConfig>
  const taken = new Map<string, string>([[jwtSecret, 'JWT_SECRET']])
  if (betterAuthSecret !== undefined) taken.set(betterAuthSecret, 'BETTER_AUTH_SECRET')
  for (const name of UPSTREAM_NAMES) {
    const prefix = `${name.toUpperCase()}_UPSTREAM`
    const secretName = `${prefix}_JWT_SECRET`
    const jwtSecret = present(env, secretName)
    if (jwtSecret !== undefined) {
      if (jwtSecret.length < MIN_SECRET_LENGTH) throw new ConfigError(secretName, `must be at least ${MIN_SECRET_LENGTH} characters long`, `${jwtSecret.length} characters`)
      const other = taken.get(jwtSecret)
      if (other !== undefined) throw new ConfigError(secretName, `must differ from ${other}: a key shared with it lets one holder mint tokens the other accepts`)
      taken.set(jwtSecret, secretName)
    }
    const subject = (present(env, `${prefix}_SUBJECT`) ?? 'user').toLowerCase()
    if (subject !== 'user' && subject !== 'pseudonymous') throw new ConfigError(`${prefix}_SUBJECT`, 'must be user or pseudonymous', subject)
    result[name] = { jwtSecret, subject }
  }
  return result
}

/** `http://localhost:PORT`: the gateway on this machine, on its port (8000 unless PORT names another). */
function defaultPublicUrl (env: Env): string {
  const port = integer(env, 'PORT', DEFAULT_PORT, 0, 65535)
  return `http://localhost:${port === 0 ? DEFAULT_PORT : port}`
}

function commonConfig (env: Env, dev: () => DevSecrets, production: boolean, dataDir: string): CommonConfig {
  const logLevel = (present(env, 'LOG_LEVEL') ?? 'info').toLowerCase()
  if (!LOG_LEVELS.includes(logLevel as LogLevel)) {
    throw new ConfigError('LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')}`, logLevel)
  }
  const jwtAlg = present(env, 'JWT_ALG') ?? 'HS256'
  if (jwtAlg !== 'HS256' && jwtAlg !== 'EdDSA') throw new ConfigError('JWT_ALG', 'must be HS256 or EdDSA', jwtAlg)
  const redisUrl = present(env, 'REDIS_URL')
  if (redisUrl !== undefined && !/^rediss?:\/\//.test(redisUrl)) throw new ConfigError('REDIS_URL', 'must be a redis:// or rediss:// URL')
  return {
    production,
    databaseUrl: postgresUrl(env, 'DATABASE_URL'),
    databaseStatementTimeout: databaseTimeout(env, 'DATABASE_STATEMENT_TIMEOUT', '5 seconds'),
    databaseIdleInTransactionTimeout: databaseTimeout(env, 'DATABASE_IDLE_IN_TRANSACTION_TIMEOUT', '30 seconds'),
    dataDir,
    jwtSecret: secret(env, 'JWT_SECRET', production, () => dev().jwtSecret),
    jwtAlg,
    publicUrl: httpUrl(env, 'PUBLIC_URL', defaultPublicUrl(env)) as string,
    allowedOrigins: Object.freeze(origins(env, 'ALLOWED_ORIGINS', DEFAULT_ALLOWED_ORIGINS)),
    userFields: Object.freeze(parseUserFields(present(env, 'AUTH_USER_FIELDS') ?? '')),
    logLevel: logLevel as LogLevel,
    redisUrl,
    adminRequire2fa: flag(env, 'ADMIN_REQUIRE_2FA', true),
    metricsPort: present(env, 'METRICS_PORT') === undefined ? undefined : integer(env, 'METRICS_PORT', 0, 0, 65535),
    metricsHost: present(env, 'METRICS_HOST') ?? DEFAULT_HOST,
    otelEndpoint: httpUrl(env, 'OTEL_EXPORTER_OTLP_ENDPOINT'),
    otelServiceName: present(env, 'OTEL_SERVICE_NAME'),
    otelSampleRatio: sampleRatio(env)
  }
}

/** `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` as a ratio (the gateway decides; see shared/tracing.ts). */
function sampleRatio (env: Env): number {
  const sampler = (present(env, 'OTEL_TRACES_SAMPLER') ?? 'parentbased_always_on').toLowerCase().replace(/^parentbased_/, '')
  if (sampler === 'always_on') return 1
  if (sampler === 'always_off') return 0
  if (sampler !== 'traceidratio') throw new ConfigError('OTEL_TRACES_SAMPLER', 'must be always_on, always_off, traceidratio or their parentbased_ forms', present(env, 'OTEL_TRACES_SAMPLER'))
  const raw = present(env, 'OTEL_TRACES_SAMPLER_ARG') ?? '1'
  const ratio = Number(raw)
  if (!/^\d*\.?\d+$/.test(raw) || ratio > 1) throw new ConfigError('OTEL_TRACES_SAMPLER_ARG', 'must be a number from 0 to 1', raw)
  return ratio
}

// Node's timers take at most 2^31 - 1 ms; a longer one would fire at once.
const MAX_TIMER_MS = 2_147_483_647

function timerDuration (env: Env, name: string, fallback: string): number {
  const ms = duration(env, name, fallback)
  if (ms > MAX_TIMER_MS) throw new ConfigError(name, 'must be at most 24 days', present(env, name))
  return ms
}

/** Node refuses a headers timeout longer than the request timeout: say so naming the variable. */
function clientTimeouts (env: Env): { requestTimeout: number, headersTimeout: number } {
  const requestTimeout = timerDuration(env, 'REQUEST_TIMEOUT', '10 seconds')
  const headersTimeout = timerDuration(env, 'HEADERS_TIMEOUT', requestTimeout < 5000 ? `${requestTimeout} ms` : '5 seconds')
  if (headersTimeout > requestTimeout) throw new ConfigError('HEADERS_TIMEOUT', `must be at most REQUEST_TIMEOUT (${requestTimeout} ms)`, present(env, 'HEADERS_TIMEOUT'))
  return { requestTimeout, headersTimeout }
}

/** Metrics are never served on a service's own port (a public one, for the gateway). */
function metricsApart (common: CommonConfig, portName: string, port: number): void {
  if (common.metricsPort !== undefined && common.metricsPort !== 0 && common.metricsPort === port) {
    throw new ConfigError('METRICS_PORT', `must differ from ${portName}: metrics have a port of their own`, String(common.metricsPort))
  }
}

function gatewayConfig (env: Env, common: CommonConfig): GatewayConfig {
  const authCorePort = integer(env, 'AUTH_CORE_PORT', DEFAULT_AUTH_CORE_PORT, 0, 65535)
  const port = integer(env, 'PORT', DEFAULT_PORT, 0, 65535)
  metricsApart(common, 'PORT', port)
  const consentVersion = present(env, 'CONSENT_VERSION') ?? '1'
  if (consentVersion.length > 32) throw new ConfigError('CONSENT_VERSION', 'must be at most 32 characters', consentVersion)
  return {
    ...common,
    port,
    host: present(env, 'HOST') ?? DEFAULT_HOST,
    authCoreUrl: httpUrl(env, 'AUTH_CORE_URL', `http://127.0.0.1:${authCorePort}`) as string,
    ragUpstreamUrl: httpUrl(env, 'RAG_UPSTREAM_URL'),
    appUpstreamUrl: httpUrl(env, 'APP_UPSTREAM_URL'),
    accessRulesFile: present(env, 'ACCESS_RULES_FILE'),
    authRateLimitMax: integer(env, 'AUTH_RATE_LIMIT_MAX', 5, 1, 1_000_000_000),
    authRateLimitWindow: duration(env, 'AUTH_RATE_LIMIT_WINDOW', '15 minutes'),
    rateLimitMax: integer(env, 'RATE_LIMIT_MAX', 300, 1, 1_000_000_000),
    rateLimitWindow: duration(env, 'RATE_LIMIT_WINDOW', '1 minute'),
    ragRateLimitAnon: integer(env, 'RAG_RATE_LIMIT_ANON', 30, 1, 1_000_000_000),
    ragRateLimitUser: integer(env, 'RAG_RATE_LIMIT_USER', 120, 1, 1_000_000_000),
    apiKeyRateLimit: integer(env, 'API_KEY_RATE_LIMIT', 120, 1, 1_000_000_000),
    consentVersion,
    trustProxy: trustProxy(env, 'TRUST_PROXY'),
    sessionCacheTtl: duration(env, 'SESSION_CACHE_TTL', '5 seconds'),
    upstreamTimeout: timerDuration(env, 'UPSTREAM_TIMEOUT', '30 seconds'),
    upstreamIdleTimeout: timerDuration(env, 'UPSTREAM_IDLE_TIMEOUT', '30 seconds'),
    upstreamMaxBufferedBytes: integer(env, 'UPSTREAM_MAX_BUFFERED_BYTES', 1024 * 1024, 0, 1024 * 1024 * 1024),
    ...clientTimeouts(env),
    maxConnections: integer(env, 'MAX_CONNECTIONS', 10_000, 1, 1_000_000),
    apiDocs: flag(env, 'API_DOCS', !common.production),
    upstreamTokens: Object.freeze(upstreamTokens(env, common.jwtSecret))
  }
}

function flag (env: Env, name: string, fallback: boolean): boolean {
  const raw = present(env, name)?.toLowerCase()
  if (raw === undefined) return fallback
  if (raw === 'true' || raw === '1' || raw === 'yes') return true
  if (raw === 'false' || raw === '0' || raw === 'no') return false
  throw new ConfigError(name, 'must be true or false', raw)
}

function smtpUrl (env: Env): string | undefined {
  const raw = present(env, 'SMTP_URL')
  if (raw === undefined) return undefined
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    // Never echoed: it may hold the mail server's password.
    throw new ConfigError('SMTP_URL', 'must be an smtp:// or smtps:// URL')
  }
  if ((url.protocol !== 'smtp:' && url.protocol !== 'smtps:') || url.hostname === '') throw new ConfigError('SMTP_URL', 'must be an smtp:// or smtps:// URL')
  return raw
}

function mailFrom (env: Env): string {
  const from = present(env, 'MAIL_FROM') ?? 'auth-gateway <no-reply@localhost>'
  if (!/^[^\r\n]*@[^\r\n]*$/.test(from) || from.length > 256) throw new ConfigError('MAIL_FROM', 'must be an address such as "Docs <no-reply@docs.example.com>"', from)
  return from
}

function authCoreConfig (env: Env, common: CommonConfig, dev: () => DevSecrets): AuthCoreConfig {
  const sameSite = (present(env, 'COOKIE_SAME_SITE') ?? 'lax').toLowerCase()
  if (sameSite !== 'lax' && sameSite !== 'strict' && sameSite !== 'none') throw new ConfigError('COOKIE_SAME_SITE', 'must be lax, strict or none', sameSite)
  if (sameSite === 'none' && !common.publicUrl.startsWith('https:')) {
    throw new ConfigError('COOKIE_SAME_SITE', 'may be none only with an https PUBLIC_URL (browsers refuse SameSite=None without Secure)', sameSite)
  }
  const authCorePort = integer(env, 'AUTH_CORE_PORT', DEFAULT_AUTH_CORE_PORT, 0, 65535)
  metricsApart(common, 'AUTH_CORE_PORT', authCorePort)
  return {
    ...common,
    betterAuthSecret: secret(env, 'BETTER_AUTH_SECRET', common.production, () => dev().betterAuthSecret),
    authCorePort,
    authCoreHost: present(env, 'AUTH_CORE_HOST') ?? DEFAULT_HOST,
    cookieSameSite: sameSite,
    smtpUrl: smtpUrl(env),
    mailFrom: mailFrom(env),
    requireEmailVerification: flag(env, 'REQUIRE_EMAIL_VERIFICATION', common.production),
    adminImpersonation: flag(env, 'ADMIN_IMPERSONATION', false),
    ...signInProviderConfig(env)
  }
}

function signInProviderConfig (env: Env): Pick<AuthCoreConfig, 'socialProviders' | 'oidc' | 'trustedProviders'> {
  const social = socialProviders(env)
  const oidc = oidcProvider(env)
  const configured = new Set([...Object.keys(social), ...(oidc === undefined ? [] : [oidc.providerId])])
  const trusted = (present(env, 'TRUSTED_PROVIDERS') ?? '').split(/[\s,]+/).filter((id) => id !== '').map((id) => id.toLowerCase())
  const unknown = trusted.find((id) => !configured.has(id))
  if (unknown !== undefined) throw new ConfigError('TRUSTED_PROVIDERS', `must name configured providers only (${configured.size === 0 ? 'none is' : `${[...configured].join(', ')} ${configured.size === 1 ? 'is' : 'are'}`})`, unknown)
  return { socialProviders: social, oidc, trustedProviders: [...new Set(trusted)] }
}

/** A client id and secret, both set or neither. */
function oauthClient (env: Env, prefix: string): OAuthClientConfig | undefined {
  const clientId = present(env, `${prefix}_CLIENT_ID`)
  const clientSecret = present(env, `${prefix}_CLIENT_SECRET`)
  if (clientId === undefined && clientSecret === undefined) return undefined
  if (clientId === undefined) throw new ConfigError(`${prefix}_CLIENT_ID`, `must be set with ${prefix}_CLIENT_SECRET`)
  if (clientSecret === undefined) throw new ConfigError(`${prefix}_CLIENT_SECRET`, `must be set with ${prefix}_CLIENT_ID`)
  return { clientId, clientSecret }
}

function socialProviders (env: Env): SocialProviders {
  const providers: SocialProviders = {}
  const github = oauthClient(env, 'GITHUB')
  const google = oauthClient(env, 'GOOGLE')
  if (github !== undefined) providers.github = github
  if (google !== undefined) providers.google = google
  return providers
}

const PROVIDER_ID = /^[a-z][a-z0-9-]{0,31}$/
// better-auth's own social providers: a generic provider of the same id would shadow their routes.
const RESERVED_PROVIDER_IDS = new Set(['github', 'google', 'credential', 'email'])

function oidcProvider (env: Env): OidcProviderConfig | undefined {
  const issuer = httpUrl(env, 'OIDC_ISSUER')
  const client = oauthClient(env, 'OIDC')
  if (issuer === undefined) {
    const stray = ['OIDC_CLIENT_ID', 'OIDC_CLIENT_SECRET', 'OIDC_PROVIDER_ID', 'OIDC_SCOPES', 'OIDC_ROLE_CLAIM'].find((name) => present(env, name) !== undefined)
    if (stray !== undefined) throw new ConfigError('OIDC_ISSUER', `must be set with ${stray}`)
    return undefined
  }
  if (client === undefined) throw new ConfigError('OIDC_CLIENT_ID', 'must be set with OIDC_ISSUER (and OIDC_CLIENT_SECRET)')
  const providerId = (present(env, 'OIDC_PROVIDER_ID') ?? 'oidc').toLowerCase()
  if (!PROVIDER_ID.test(providerId) || RESERVED_PROVIDER_IDS.has(providerId)) {
    throw new ConfigError('OIDC_PROVIDER_ID', 'must be 1 to 32 lower-case letters, digits and dashes, starting with a letter, and not github, google, credential or email', providerId)
  }
  const scopes = (present(env, 'OIDC_SCOPES') ?? 'openid email profile').split(/[\s,]+/).filter((scope) => scope !== '')
  if (!scopes.includes('openid')) throw new ConfigError('OIDC_SCOPES', 'must include openid', scopes.join(' '))
  const roleClaim = present(env, 'OIDC_ROLE_CLAIM')
  if (roleClaim !== undefined && !/^[A-Za-z_][\w:./-]{0,127}$/.test(roleClaim)) throw new ConfigError('OIDC_ROLE_CLAIM', 'must be a claim name', roleClaim)
  return { ...client, issuer: issuer.replace(/\/+$/, ''), providerId, scopes, roleClaim }
}

/**
 * Reads, validates and freezes the configuration of one service, or of both (the default: `npm
 * start`, the CLIs, the tests). The only reader of the environment in the project. Throws a
 * `ConfigError` naming the first bad variable; a service never reads, so never refuses, a variable
 * only the other one uses.
 */
export function loadConfig (env?: Env): Readonly<Config>
export function loadConfig (env: Env, service: 'gateway'): Readonly<GatewayConfig>
export function loadConfig (env: Env, service: 'auth-core'): Readonly<AuthCoreConfig>
export function loadConfig (env: Env = process.env, service?: Service): Readonly<GatewayConfig | AuthCoreConfig | Config> {
  const production = (present(env, 'NODE_ENV') ?? 'development') === 'production'
  const dataDir = resolve(present(env, 'DATA_DIR') ?? DEFAULT_DATA_DIR)
  let devSecrets: DevSecrets | undefined
  const dev = (): DevSecrets => (devSecrets ??= loadDevSecrets(dataDir))
  const common = commonConfig(env, dev, production, dataDir)
  if (service === 'gateway') return Object.freeze(gatewayConfig(env, common))
  if (service === 'auth-core') return Object.freeze(authCoreConfig(env, common, dev))
  const both: Config = { ...gatewayConfig(env, common), ...authCoreConfig(env, common, dev) }
  // One process holding both secrets: an upstream's key must differ from auth-core's too.
  upstreamTokens(env, common.jwtSecret, both.betterAuthSecret)
  return Object.freeze(both)
}
