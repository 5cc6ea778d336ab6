import t from 'tap'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { ConfigError, loadConfig, parseDuration, parseUserFields } from '../../shared/config.ts'
import { runScript } from '../cli.ts'
import { tempDir } from '../temp-dir.ts'

const SECRET = 'a'.repeat(32)

t.test('defaults follow DESIGN §4', async (t) => {
  const dataDir = tempDir(t)
  const config = loadConfig({ DATA_DIR: dataDir })
  t.equal(config.port, 8000)
  t.equal(config.host, '127.0.0.1')
  t.equal(config.publicUrl, 'http://localhost:8000')
  t.equal(config.authCoreUrl, 'http://127.0.0.1:3001')
  t.same(config.allowedOrigins, ['http://localhost:3000'])
  t.equal(config.databaseUrl, undefined)
  t.equal(config.authRateLimitMax, 5)
  t.equal(config.authRateLimitWindow, 15 * 60_000)
  t.equal(config.rateLimitMax, 300)
  t.equal(config.rateLimitWindow, 60_000)
  t.equal(config.ragRateLimitAnon, 30)
  t.equal(config.ragRateLimitUser, 120)
  t.equal(config.consentVersion, '1')
  t.equal(config.trustProxy, false)
  t.equal(config.sessionCacheTtl, 5000)
  t.equal(config.logLevel, 'info')
  t.equal(config.databaseStatementTimeout, 5000)
  t.equal(config.databaseIdleInTransactionTimeout, 30_000)
  t.equal(config.accessRulesFile, undefined, 'no ACCESS_RULES_FILE: the built-in rules only')
  t.ok(Object.isFrozen(config), 'frozen')
})

t.test('ACCESS_RULES_FILE: the path, read and checked when the gateway is built (test/gateway/access/access-rules-file.test.ts)', async (t) => {
  const config = loadConfig({ DATA_DIR: tempDir(t), ACCESS_RULES_FILE: ' /etc/auth-gateway/rules.json ' }, 'gateway')
  t.equal(config.accessRulesFile, '/etc/auth-gateway/rules.json')
  t.equal(loadConfig({ DATA_DIR: tempDir(t), ACCESS_RULES_FILE: '' }, 'gateway').accessRulesFile, undefined, 'empty is unset')
})

t.test('DATABASE_STATEMENT_TIMEOUT and DATABASE_IDLE_IN_TRANSACTION_TIMEOUT: durations, read by both services', async (t) => {
  const dataDir = tempDir(t)
  const env = { DATA_DIR: dataDir, BETTER_AUTH_SECRET: SECRET, JWT_SECRET: SECRET, DATABASE_STATEMENT_TIMEOUT: '750 ms', DATABASE_IDLE_IN_TRANSACTION_TIMEOUT: '1 minute' }
  for (const config of [loadConfig(env, 'gateway'), loadConfig(env, 'auth-core'), loadConfig(env)]) {
    t.equal(config.databaseStatementTimeout, 750)
    t.equal(config.databaseIdleInTransactionTimeout, 60_000)
  }
  t.throws(() => loadConfig({ DATA_DIR: dataDir, DATABASE_STATEMENT_TIMEOUT: '30 days' }), {
    variable: 'DATABASE_STATEMENT_TIMEOUT',
    message: /DATABASE_STATEMENT_TIMEOUT must be at most 24 days/
  })
})

t.test('development secrets are generated once into DATA_DIR and reused', async (t) => {
  const dataDir = tempDir(t)
  const first = loadConfig({ DATA_DIR: dataDir })
  const second = loadConfig({ DATA_DIR: dataDir })
  t.ok(first.betterAuthSecret.length >= 32)
  t.ok(first.jwtSecret.length >= 32)
  t.not(first.betterAuthSecret, first.jwtSecret)
  t.equal(second.betterAuthSecret, first.betterAuthSecret)
  t.equal(second.jwtSecret, first.jwtSecret)
  const file = join(dataDir, 'secrets.json')
  t.ok(existsSync(file))
  t.equal(statSync(file).mode & 0o777, 0o600, 'readable by the owner only')
  t.equal(statSync(dataDir).mode & 0o777, 0o700, 'DATA_DIR itself is the owner\'s only')
  t.match(readFileSync(file, 'utf8'), first.jwtSecret)
})

t.test('production requires long secrets', async (t) => {
  const dataDir = tempDir(t)
  t.throws(() => loadConfig({ NODE_ENV: 'production', DATA_DIR: dataDir, JWT_SECRET: SECRET }), { name: 'ConfigError', variable: 'BETTER_AUTH_SECRET' })
  t.throws(() => loadConfig({ NODE_ENV: 'production', DATA_DIR: dataDir, BETTER_AUTH_SECRET: SECRET }), { name: 'ConfigError', variable: 'JWT_SECRET' })
  t.throws(() => loadConfig({ NODE_ENV: 'production', DATA_DIR: dataDir, BETTER_AUTH_SECRET: 'short', JWT_SECRET: SECRET }), {
    variable: 'BETTER_AUTH_SECRET',
    message: /BETTER_AUTH_SECRET must be at least 32 characters long \(got "5 characters"\)/
  })
  t.notOk(existsSync(join(dataDir, 'secrets.json')), 'nothing generated in production')
  const ok = loadConfig({ NODE_ENV: 'production', DATA_DIR: dataDir, BETTER_AUTH_SECRET: SECRET, JWT_SECRET: SECRET })
  t.equal(ok.production, true)
})

t.test('each malformed variable is named', async (t) => {
  const dataDir = tempDir(t)
  const cases: Array<[string, string]> = [
    ['PORT', 'eighty'],
    ['PORT', '70000'],
    ['PORT', '-1'],
    ['AUTH_CORE_PORT', '3.5'],
    ['PUBLIC_URL', 'localhost:8000'],
    ['AUTH_CORE_URL', 'ftp://x'],
    ['RAG_UPSTREAM_URL', 'not a url'],
    ['APP_UPSTREAM_URL', 'mailto:a@b'],
    ['DATABASE_URL', 'mysql://root@localhost/db'],
    ['ALLOWED_ORIGINS', 'http://ok.example,https://bad.example/path'],
    ['AUTH_USER_FIELDS', 'role:date'],
    ['AUTH_USER_FIELDS', 'email:string'],
    ['AUTH_USER_FIELDS', 'role:string:secret'],
    ['AUTH_RATE_LIMIT_MAX', 'many'],
    ['AUTH_RATE_LIMIT_WINDOW', 'a fortnight'],
    ['RATE_LIMIT_WINDOW', '0 seconds'],
    ['RAG_RATE_LIMIT_ANON', '0'],
    ['TRUST_PROXY', 'maybe'],
    ['SESSION_CACHE_TTL', 'soon'],
    ['DATABASE_STATEMENT_TIMEOUT', 'forever'],
    ['DATABASE_STATEMENT_TIMEOUT', '0'],
    ['DATABASE_IDLE_IN_TRANSACTION_TIMEOUT', '-5 seconds'],
    ['LOG_LEVEL', 'loud'],
    ['REDIS_URL', 'http://localhost:6379'],
    ['COOKIE_SAME_SITE', 'sideways'],
    ['COOKIE_SAME_SITE', 'none']
  ]
  for (const [variable, value] of cases) {
    t.throws(() => loadConfig({ DATA_DIR: dataDir, [variable]: value }), { name: 'ConfigError', variable }, `${variable}=${value}`)
  }
  const err = (() => { try { loadConfig({ DATA_DIR: dataDir, PORT: 'eighty' }) } catch (e) { return e as ConfigError } })()
  t.equal(err?.message, 'Invalid configuration: PORT must be an integer between 0 and 65535 (got "eighty")')
})

t.test('TRUST_PROXY: false, a hop count, or the proxy addresses; never true', async (t) => {
  const dataDir = tempDir(t)
  const trustProxy = (value: string) => loadConfig({ DATA_DIR: dataDir, TRUST_PROXY: value }).trustProxy
  t.equal(trustProxy('false'), false)
  t.equal(trustProxy(' FALSE '), false)
  t.equal(trustProxy('1'), 1)
  t.equal(trustProxy('2'), 2)
  t.same(trustProxy('127.0.0.1'), ['127.0.0.1'])
  t.same(trustProxy('127.0.0.1, 10.0.0.0/8,::1 ,fd00::/8,192.168.0.0/16,::ffff:10.0.0.0/104'), ['127.0.0.1', '10.0.0.0/8', '::1', 'fd00::/8', '192.168.0.0/16', '::ffff:10.0.0.0/104'])
  t.ok(Object.isFrozen(trustProxy('10.0.0.0/8')), 'the list is frozen')

  for (const value of ['true', 'TRUE', 'yes']) {
    t.throws(() => trustProxy(value), {
      name: 'ConfigError',
      variable: 'TRUST_PROXY',
      message: /^Invalid configuration: TRUST_PROXY must be false, a hop count such as 1, or the proxy addresses\/CIDRs; true would trust any client's X-Forwarded-For/
    }, `${value} is refused`)
  }
  const bad: Array<[string, string]> = [
    ['10.0.0.0/33', '10.0.0.0/33'],
    ['0.0.0.0/0', '0.0.0.0/0'],
    ['10.0.0.0/8,::/0', '::/0'],
    ['::1/129', '::1/129'],
    ['10.0.0.0/', '10.0.0.0/'],
    ['10.0.0.0/-1', '10.0.0.0/-1'],
    ['10.0.0.0/8/8', '10.0.0.0/8/8'],
    ['10.0.0/8', '10.0.0/8'],
    ['127.0.0.1,proxy.example', 'proxy.example'],
    ['127.0.0.1,1', '1'],
    ['256.0.0.1', '256.0.0.1'],
    ['0', '0'],
    ['256', '256'],
    [',', ','],
    ['1.5', '1.5'],
    ['-1', '-1'],
    ['maybe', 'maybe']
  ]
  for (const [value, entry] of bad) {
    t.throws(() => trustProxy(value), { name: 'ConfigError', variable: 'TRUST_PROXY', message: `(got ${JSON.stringify(entry)})` }, `${value} is refused naming ${entry}`)
  }
})

t.test('durations and user fields parse', async (t) => {
  t.equal(parseDuration('15 minutes'), 900_000)
  t.equal(parseDuration('1 minute'), 60_000)
  t.equal(parseDuration('5 seconds'), 5000)
  t.equal(parseDuration('5s'), 5000)
  t.equal(parseDuration('250'), 250)
  t.equal(parseDuration('2 hours'), 7_200_000)
  t.equal(parseDuration('soon'), undefined)
  t.same(parseUserFields('role:string:readonly tier:string  level:number'), [
    { name: 'role', type: 'string', readonly: true },
    { name: 'tier', type: 'string', readonly: false },
    { name: 'level', type: 'number', readonly: false }
  ])
  t.throws(() => parseUserFields('tier:string tier:number'), { name: 'ConfigError', variable: 'AUTH_USER_FIELDS' })
})

t.test('a bad variable stops startup with one line naming it', async (t) => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ PORT: 'abc' }, /^Invalid configuration: PORT must be an integer/],
    [{ TRUST_PROXY: 'true' }, /^Invalid configuration: TRUST_PROXY must be false, a hop count such as 1, or the proxy addresses\/CIDRs/],
    [{ NODE_ENV: 'production', BETTER_AUTH_SECRET: 'too-short', JWT_SECRET: SECRET }, /^Invalid configuration: BETTER_AUTH_SECRET must be at least 32 characters/]
  ]
  // Separate processes that share nothing: run side by side.
  const results = await Promise.all(cases.map(([env]) => runScript('gateway/cli/start.ts', [], { DATA_DIR: tempDir(t), ...env }, 60_000)))
  for (const [i, [env, expected]] of cases.entries()) {
    const result = results[i]
    t.equal(result.code, 1, `exit code 1 for ${Object.keys(env).join(',')}`)
    const lines = result.stderr.trim().split('\n')
    t.equal(lines.length, 1, 'one line')
    t.match(lines[0], expected)
    t.notMatch(result.stderr, /too-short/, 'the secret itself is never printed')
  }
})

t.test('each service validates only what it reads: the gateway never needs BETTER_AUTH_SECRET', async (t) => {
  const dataDir = tempDir(t)
  const production = { NODE_ENV: 'production', DATA_DIR: dataDir, JWT_SECRET: SECRET }
  const gateway = loadConfig(production, 'gateway')
  t.equal(gateway.jwtSecret, SECRET)
  t.notOk('betterAuthSecret' in gateway, 'the gateway configuration holds no auth-core secret')
  t.throws(() => loadConfig(production, 'auth-core'), { name: 'ConfigError', variable: 'BETTER_AUTH_SECRET' }, 'auth-core requires it')
  t.throws(() => loadConfig(production), { name: 'ConfigError', variable: 'BETTER_AUTH_SECRET' }, 'both services in one process require it')

  const gatewayOnly = { DATA_DIR: dataDir, RAG_UPSTREAM_URL: 'not a url', RATE_LIMIT_MAX: 'many', TRUST_PROXY: 'true' }
  t.notOk('ragUpstreamUrl' in loadConfig(gatewayOnly, 'auth-core'), 'auth-core ignores the gateway\'s variables')
  t.throws(() => loadConfig(gatewayOnly, 'gateway'), { name: 'ConfigError', variable: 'RAG_UPSTREAM_URL' })
  const authOnly = { DATA_DIR: dataDir, COOKIE_SAME_SITE: 'sometimes', AUTH_CORE_HOST: '0.0.0.0' }
  t.notOk('cookieSameSite' in loadConfig(authOnly, 'gateway'), 'the gateway ignores auth-core\'s variables')
  t.throws(() => loadConfig(authOnly, 'auth-core'), { name: 'ConfigError', variable: 'COOKIE_SAME_SITE' })
})

t.test('sign-in providers: each only when configured, a client id and secret together, a sane OIDC provider', async (t) => {
  const dataDir = tempDir(t)
  const none = loadConfig({ DATA_DIR: dataDir }, 'auth-core')
  t.same(none.socialProviders, {})
  t.equal(none.oidc, undefined)

  const some = loadConfig({ DATA_DIR: dataDir, GITHUB_CLIENT_ID: ' gh-id ', GITHUB_CLIENT_SECRET: 'gh-secret', OIDC_ISSUER: 'https://sso.example.com/', OIDC_CLIENT_ID: 'docs', OIDC_CLIENT_SECRET: 's3cret' }, 'auth-core')
  t.same(some.socialProviders, { github: { clientId: 'gh-id', clientSecret: 'gh-secret' } }, 'GitHub only: Google is not configured')
  t.same(some.oidc, { clientId: 'docs', clientSecret: 's3cret', issuer: 'https://sso.example.com', providerId: 'oidc', scopes: ['openid', 'email', 'profile'], roleClaim: undefined })
  t.same(loadConfig({ DATA_DIR: dataDir, OIDC_ISSUER: 'https://sso.example.com', OIDC_CLIENT_ID: 'docs', OIDC_CLIENT_SECRET: 's', OIDC_PROVIDER_ID: 'Corp', OIDC_SCOPES: 'openid,email groups' }, 'auth-core').oidc?.scopes, ['openid', 'email', 'groups'])

  const refused: Array<[Record<string, string>, string]> = [
    [{ GITHUB_CLIENT_ID: 'id' }, 'GITHUB_CLIENT_SECRET'],
    [{ GOOGLE_CLIENT_SECRET: 'secret' }, 'GOOGLE_CLIENT_ID'],
    [{ OIDC_CLIENT_ID: 'docs', OIDC_CLIENT_SECRET: 's' }, 'OIDC_ISSUER'],
    [{ OIDC_ISSUER: 'https://sso.example.com' }, 'OIDC_CLIENT_ID'],
    [{ OIDC_ISSUER: 'sso.example.com', OIDC_CLIENT_ID: 'docs', OIDC_CLIENT_SECRET: 's' }, 'OIDC_ISSUER'],
    [{ OIDC_ISSUER: 'https://sso.example.com', OIDC_CLIENT_ID: 'docs', OIDC_CLIENT_SECRET: 's', OIDC_PROVIDER_ID: 'github' }, 'OIDC_PROVIDER_ID'],
    [{ OIDC_ISSUER: 'https://sso.example.com', OIDC_CLIENT_ID: 'docs', OIDC_CLIENT_SECRET: 's', OIDC_PROVIDER_ID: '../x' }, 'OIDC_PROVIDER_ID'],
    [{ OIDC_ISSUER: 'https://sso.example.com', OIDC_CLIENT_ID: 'docs', OIDC_CLIENT_SECRET: 's', OIDC_SCOPES: 'email profile' }, 'OIDC_SCOPES'],
    [{ OIDC_ISSUER: 'https://sso.example.com', OIDC_CLIENT_ID: 'docs', OIDC_CLIENT_SECRET: 's', OIDC_ROLE_CLAIM: 'two words' }, 'OIDC_ROLE_CLAIM'],
    [{ OIDC_ROLE_CLAIM: 'groups' }, 'OIDC_ISSUER'],
    [{ TRUSTED_PROVIDERS: 'github' }, 'TRUSTED_PROVIDERS'],
    [{ GITHUB_CLIENT_ID: 'id', GITHUB_CLIENT_SECRET: 's', TRUSTED_PROVIDERS: 'github,google' }, 'TRUSTED_PROVIDERS']
  ]
  for (const [env, variable] of refused) {
    t.throws(() => loadConfig({ DATA_DIR: dataDir, ...env }, 'auth-core'), { name: 'ConfigError', variable }, `${Object.keys(env).join(', ')}: ${variable}`)
  }
  t.same(some.trustedProviders, [], 'no provider is trusted by default')
  t.same(loadConfig({ DATA_DIR: dataDir, GITHUB_CLIENT_ID: 'id', GITHUB_CLIENT_SECRET: 's', OIDC_ISSUER: 'https://sso.example.com', OIDC_CLIENT_ID: 'docs', OIDC_CLIENT_SECRET: 's', TRUSTED_PROVIDERS: 'OIDC, oidc' }, 'auth-core').trustedProviders, ['oidc'])
  t.notOk('oidc' in loadConfig({ DATA_DIR: dataDir, OIDC_ISSUER: 'not a url' }, 'gateway'), 'the gateway never reads them')
})
