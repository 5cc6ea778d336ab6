import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { createLocalJWKSet, jwtVerify } from 'jose'
import type { JSONWebKeySet, JWTVerifyResult } from 'jose'
import type { FastifyInstance } from 'fastify'
import type { AddressInfo } from 'node:net'
import { loadConfig } from '../shared/config.ts'
import type { Config, Env } from '../shared/config.ts'
import { startEmbeddedPostgres } from '../shared/db.ts'
import { startStack } from '../gateway/cli/stack.ts'
import { buildGateway } from '../gateway/app.ts'
import type { Stack } from '../gateway/cli/stack.ts'
import type { ProcessMetrics } from '../shared/metrics.ts'
import { tempDir } from './temp-dir.ts'
import type { Teardown } from './temp-dir.ts'

export { tempDir }
export type { Teardown }

/** The machine's Postgres when the run names one, else the embedded database. */
export const SERVER_DATABASE_URL: string | undefined = process.env.TEST_DATABASE_URL ?? process.env.DATABASE_URL

export const TEST_ORIGIN = 'http://localhost:3000'
export const SECRET = 'test-secret-of-at-least-thirty-two-characters'
export const JWT_TEST_SECRET = 'jwt-test-secret-of-at-least-thirty-two-chars'

/**
 * A database of its own for one test: a uniquely named database on the machine's Postgres (dropped
 * afterwards), or a fresh in-memory embedded Postgres when no server is named.
 */
export async function testDatabase (t: Teardown): Promise<string> {
  if (SERVER_DATABASE_URL === undefined) {
    const embedded = await startEmbeddedPostgres({ dataDir: null })
    t.teardown(() => embedded.stop())
    return embedded.url
  }
  const name = `auth_gateway_test_${Date.now()}_${randomBytes(4).toString('hex')}`
  const admin = new pg.Client({ connectionString: SERVER_DATABASE_URL })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${name}`)
  await admin.end()
  t.teardown(async () => {
    const client = new pg.Client({ connectionString: SERVER_DATABASE_URL })
    await client.connect()
    await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
    await client.end()
  })
  const url = new URL(SERVER_DATABASE_URL)
  url.pathname = `/${name}`
  return url.toString()
}

/** A configuration for tests: loopback, free ports, fixed secrets, quiet logs. */
export function testConfig (t: Teardown, env: Env = {}): Readonly<Config> {
  return loadConfig({
    DATA_DIR: tempDir(t),
    PORT: '0',
    AUTH_CORE_PORT: '0',
    BETTER_AUTH_SECRET: SECRET,
    JWT_SECRET: JWT_TEST_SECRET,
    ALLOWED_ORIGINS: TEST_ORIGIN,
    LOG_LEVEL: 'silent',
    // Generous budgets: the rate-limit tests set their own.
    AUTH_RATE_LIMIT_MAX: '1000',
    RAG_RATE_LIMIT_ANON: '1000',
    RAG_RATE_LIMIT_USER: '1000',
    RATE_LIMIT_MAX: '10000',
    ...env
  })
}

export interface TestStackOptions {
  /** Run on the embedded Postgres kept in `env.DATA_DIR` (as `npm start` does), not a test database. */
  embedded?: boolean
}

/** The whole stack (auth-core, gateway, own database) on loopback, closed when the test ends. */
export async function startTestStack (t: Teardown, env: Env = {}, options: TestStackOptions = {}): Promise<Stack> {
  const databaseUrl = options.embedded === true ? undefined : env.DATABASE_URL ?? await testDatabase(t)
  const config = testConfig(t, { ...env, DATABASE_URL: databaseUrl })
  const stack = await startStack(config)
  t.teardown(() => stack.close())
  return stack
}

export interface GatewayOnOptions {
  /** The RAG and app upstreams' deadline (`buildGateway`'s option). */
  upstreamTimeoutMs?: number
  /** Metrics of its own (`buildGateway`'s option), read from their registry. */
  metrics?: ProcessMetrics
}

/**
 * Another gateway on a running stack's database and auth-core, with a configuration of its own
 * (`env` over the test defaults; `AUTH_CORE_URL` may point elsewhere): budgets and caches start
 * from zero, and it costs no database, migration or auth-core. Ready, for `inject`; `listen` it for
 * raw sockets. Closed when the test ends.
 */
export async function gatewayOn (t: Teardown, stack: Stack, env: Env = {}, options: GatewayOnOptions = {}): Promise<FastifyInstance> {
  const config = testConfig(t, { DATABASE_URL: stack.databaseUrl, AUTH_CORE_URL: stack.authCoreUrl, ...env })
  const gateway = await buildGateway(config, { pool: stack.pool, ...options })
  t.teardown(() => gateway.close())
  await gateway.ready()
  return gateway
}

/** Listens on a free loopback port; the base URL. */
export async function listenOn (app: FastifyInstance): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
}

/** A fetch that keeps cookies like a browser does for one site, and sends the allowed Origin. */
export function cookieFetch (origin: string = TEST_ORIGIN): typeof fetch & { cookies: Map<string, string> } {
  const cookies = new Map<string, string>()
  const wrapped = async (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const headers = new Headers(init.headers)
    if (cookies.size > 0) headers.set('cookie', [...cookies].map(([name, value]) => `${name}=${value}`).join('; '))
    if (!headers.has('origin')) headers.set('origin', origin)
    const response = await fetch(input, { ...init, headers })
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(';')
      const at = pair.indexOf('=')
      const name = pair.slice(0, at).trim()
      const value = pair.slice(at + 1).trim()
      const expired = value === '' || attributes.some((a) => /^\s*max-age=0\s*$/i.test(a))
      if (expired) cookies.delete(name)
      else cookies.set(name, value)
    }
    return response
  }
  return Object.assign(wrapped as typeof fetch, { cookies })
}

let emailCounter = 0
export function uniqueEmail (prefix = 'reader'): string {
  emailCounter += 1
  return `${prefix}-${Date.now()}-${emailCounter}-${randomBytes(3).toString('hex')}@example.com`
}

/** JSON POST helper over fetch. */
export async function postJson (f: typeof fetch, url: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return f(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) })
}

/**
 * Verifies an identity token as an upstream would: EdDSA against the gateway's `GET /auth/jwks`,
 * with the issuer and the upstream's audience pinned.
 */
export async function verifyIdentityToken (gatewayUrl: string, token: string, audience: 'rag' | 'app'): Promise<JWTVerifyResult> {
  const keys = await (await fetch(`${gatewayUrl}/auth/jwks`)).json() as JSONWebKeySet
  return jwtVerify(token, createLocalJWKSet(keys), { issuer: 'better-auth', audience, algorithms: ['EdDSA'] })
}
