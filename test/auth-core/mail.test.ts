import t from 'tap'
import { readdirSync, statSync } from 'node:fs'
import { Writable } from 'node:stream'
import Fastify from 'fastify'
import type { FastifyBaseLogger } from 'fastify'
import pg from 'pg'
import { Mailer, resetPasswordMail } from '../../auth-core/mail.ts'
import { buildAuthCore } from '../../auth-core/app.ts'
import { loadConfig } from '../../shared/config.ts'
import { tempDir } from '../helper.ts'
import { startMailServer } from '../mail.ts'
import { closedPortUrl } from '../upstream.ts'

/** Fastify's logger (pino), whose lines the test reads. */
function capturingLog (): { log: FastifyBaseLogger, lines: () => string } {
  let text = ''
  const stream = new Writable({ write (chunk: Buffer, _encoding, done) { text += chunk.toString(); done() } })
  return { log: Fastify({ logger: { level: 'debug', stream } }).log, lines: () => text }
}

const LINK = 'http://localhost:8000/auth/reset-password/SECRET-RESET-TOKEN?callbackURL=x'

t.test('a mail the server keeps refusing: retried, then given up, the link never logged', async (t) => {
  const server = await startMailServer(t)
  server.refuse(10)
  const { log, lines } = capturingLog()
  const mailer = new Mailer({ smtpUrl: server.url, from: 'Docs <no-reply@docs.example.com>', outboxDir: tempDir(t), log, attempts: 3, retryDelaysMs: [5] })
  t.teardown(() => { mailer.close() })
  mailer.send(resetPasswordMail('Docs', 'reader@example.com', LINK))
  await mailer.idle()
  t.equal(server.mails.length, 0, 'nothing delivered')
  t.equal((lines().match(/"event":"mail_retry"/g) ?? []).length, 2, 'two retries')
  t.match(lines(), /"event":"mail_failed"[^\n]*"attempts":3/, 'then given up, at error')
  t.match(lines(), /"responseCode":451/, 'with the server\'s answer')
  t.notMatch(lines(), /SECRET-RESET-TOKEN/, 'the link\'s token is never logged')
  t.notMatch(lines(), /reader@example\.com/, 'nor the recipient')
})

t.test('a server that is not there: the same, and the caller never waits', async (t) => {
  const { log, lines } = capturingLog()
  const url = (await closedPortUrl()).replace(/^http/, 'smtp')
  const mailer = new Mailer({ smtpUrl: url, from: 'a@b.example', outboxDir: tempDir(t), log, attempts: 2, retryDelaysMs: [5] })
  t.teardown(() => { mailer.close() })
  const started = Date.now()
  mailer.send(resetPasswordMail('Docs', 'reader@example.com', LINK))
  t.ok(Date.now() - started < 50, 'send returns at once')
  await mailer.idle()
  t.match(lines(), /"event":"mail_failed"[^\n]*"code":"ESOCKET"/, "given up with the socket error")
  t.notMatch(lines(), /SECRET-RESET-TOKEN/)
})

t.test('the outbox: one .eml file per mail, readable by the owner only', async (t) => {
  const { log, lines } = capturingLog()
  const outbox = `${tempDir(t)}/outbox`
  const mailer = new Mailer({ smtpUrl: undefined, from: 'a@b.example', outboxDir: outbox, log })
  t.equal(mailer.outboxDir, outbox)
  mailer.send(resetPasswordMail('Docs', 'reader@example.com', LINK))
  mailer.send(resetPasswordMail('Docs', 'other@example.com', LINK))
  await mailer.idle()
  const files = readdirSync(outbox)
  t.equal(files.length, 2, 'two files')
  for (const file of files) t.equal(statSync(`${outbox}/${file}`).mode & 0o777, 0o600, `${file} is 0600`)
  t.equal(statSync(outbox).mode & 0o777, 0o700, 'the folder is 0700')
  t.match(lines(), /"event":"mail_written"/, 'each logged with its file')
  t.notMatch(lines(), /SECRET-RESET-TOKEN/, 'not with its link')
})

t.test('production without SMTP_URL: auth-core does not start', async (t) => {
  const config = loadConfig({ NODE_ENV: 'production', DATA_DIR: tempDir(t), BETTER_AUTH_SECRET: 'b'.repeat(40), JWT_SECRET: 'j'.repeat(40), DATABASE_URL: 'postgres://127.0.0.1:1/never' }, 'auth-core')
  t.equal(config.requireEmailVerification, true, 'production requires verification by default')
  const pool = new pg.Pool({ connectionString: config.databaseUrl })
  t.teardown(() => pool.end())
  await t.rejects(buildAuthCore(config, { pool }), { name: 'ConfigError', variable: 'SMTP_URL' }, 'refused before serving: links would go nowhere')
  t.throws(() => loadConfig({ SMTP_URL: 'http://mail.example.com', DATA_DIR: tempDir(t) }, 'auth-core'), { name: 'ConfigError', variable: 'SMTP_URL' }, 'only smtp:// and smtps://')
  const badUrl = ((): Error | undefined => {
    try {
      loadConfig({ SMTP_URL: 'smtp://user:hunter2@', DATA_DIR: tempDir(t) }, 'auth-core')
    } catch (err) {
      return err as Error
    }
  })()
  t.match(badUrl, { name: 'ConfigError', variable: 'SMTP_URL' }, 'a URL without a host is refused')
  t.notMatch(badUrl?.message ?? '', /hunter2/, 'and never echoed (it may hold a password)')
  t.throws(() => loadConfig({ MAIL_FROM: 'nobody', DATA_DIR: tempDir(t) }, 'auth-core'), { name: 'ConfigError', variable: 'MAIL_FROM' })
  t.throws(() => loadConfig({ REQUIRE_EMAIL_VERIFICATION: 'maybe', DATA_DIR: tempDir(t) }, 'auth-core'), { name: 'ConfigError', variable: 'REQUIRE_EMAIL_VERIFICATION' })
  t.equal(loadConfig({ DATA_DIR: tempDir(t) }, 'auth-core').requireEmailVerification, false, 'development does not require it')
})
