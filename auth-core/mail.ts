import { randomBytes } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import nodemailer from 'nodemailer'
import type { Transporter } from 'nodemailer'
import type { FastifyBaseLogger } from 'fastify'

/** What a mail is for: logged instead of its recipient or link. */
export type MailKind = 'verify-email' | 'reset-password' | 'existing-account'

export interface Mail {
  kind: MailKind
  to: string
  subject: string
  text: string
  html: string
}

export interface MailerOptions {
  /** `smtp://` or `smtps://`; unset: every mail is written to `outboxDir` as an `.eml` file. */
  smtpUrl: string | undefined
  from: string
  outboxDir: string
  log: FastifyBaseLogger
  /** Attempts per mail. @default 4 */
  attempts?: number
  /** Waits between attempts, in ms (the last one repeats). @default [1000, 5000, 20000] */
  retryDelaysMs?: readonly number[]
}

/** What may be logged of a failed send: never the message, whose link carries a token. */
function sendError (err: unknown): Record<string, unknown> {
  const { code, responseCode, command } = (err ?? {}) as { code?: unknown, responseCode?: unknown, command?: unknown }
  return { code, responseCode, command }
}

/**
 * Outgoing mail (verification and password-reset links). Sending never holds up or fails the HTTP
 * answer, which therefore looks the same whether a mail went out, failed or was never due (no
 * account to send to): it is queued, tried a few times, and what failed is logged by kind, never by
 * link or token. Without an SMTP server (development) each mail is an `.eml` file in the outbox.
 */
export class Mailer {
  readonly #transport: Transporter
  readonly #outboxDir: string | null
  readonly #from: string
  readonly #log: FastifyBaseLogger
  readonly #attempts: number
  readonly #retryDelaysMs: readonly number[]
  readonly #pending = new Set<Promise<void>>()
  readonly #timers = new Set<NodeJS.Timeout>()
  #closed = false

  constructor (options: MailerOptions) {
    this.#from = options.from
    this.#log = options.log
    this.#attempts = options.attempts ?? 4
    this.#retryDelaysMs = options.retryDelaysMs ?? [1000, 5000, 20_000]
    if (options.smtpUrl === undefined) {
      this.#outboxDir = options.outboxDir
      this.#transport = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'unix' })
    } else {
      this.#outboxDir = null
      this.#transport = nodemailer.createTransport(options.smtpUrl)
    }
  }

  /** Where mails go instead of a server, or null when they are sent. */
  get outboxDir (): string | null {
    return this.#outboxDir
  }

  /** Queues a mail; returns at once. */
  send (mail: Mail): void {
    if (this.#closed) return
    const delivery = this.#deliver(mail).finally(() => { this.#pending.delete(delivery) })
    this.#pending.add(delivery)
  }

  /** Resolves once every queued mail was delivered or given up (shutdown, tests). */
  async idle (): Promise<void> {
    while (this.#pending.size > 0) await Promise.all(this.#pending)
  }

  /** Stops retrying; mails still queued are given up. */
  close (): void {
    this.#closed = true
    for (const timer of this.#timers) clearTimeout(timer)
    this.#transport.close()
  }

  async #deliver (mail: Mail): Promise<void> {
    for (let attempt = 1; attempt <= this.#attempts; attempt++) {
      try {
        const info = await this.#transport.sendMail({ from: this.#from, to: mail.to, subject: mail.subject, text: mail.text, html: mail.html })
        if (this.#outboxDir !== null) {
          const file = this.#write(mail.kind, info.message as Buffer)
          this.#log.info({ event: 'mail_written', kind: mail.kind, file }, `mail written to ${file} (no SMTP_URL): open it for the link`)
        } else {
          this.#log.info({ event: 'mail_sent', kind: mail.kind, messageId: info.messageId }, 'mail sent')
        }
        return
      } catch (err) {
        const last = attempt === this.#attempts || this.#closed
        if (last) {
          this.#log.error({ event: 'mail_failed', kind: mail.kind, attempts: attempt, err: sendError(err) }, 'mail could not be sent')
          return
        }
        this.#log.warn({ event: 'mail_retry', kind: mail.kind, attempt, err: sendError(err) }, 'mail not sent yet, trying again')
        const delay = this.#retryDelaysMs[Math.min(attempt - 1, this.#retryDelaysMs.length - 1)] ?? 1000
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => { this.#timers.delete(timer); resolve() }, delay)
          this.#timers.add(timer)
        })
        if (this.#closed) return
      }
    }
  }

  #write (kind: MailKind, message: Buffer): string {
    const dir = this.#outboxDir as string
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    const file = join(dir, `${new Date().toISOString().replace(/[:.]/g, '-')}-${kind}-${randomBytes(3).toString('hex')}.eml`)
    // The links in it are as good as a password for a while: for the owner only.
    writeFileSync(file, message, { mode: 0o600 })
    return file
  }
}

function escapeHtml (text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string)
}

function linkMail (kind: MailKind, to: string, subject: string, intro: string, action: string, url: string, outro: string): Mail {
  return {
    kind,
    to,
    subject,
    text: `${intro}\n\n${action}:\n${url}\n\n${outro}\n`,
    html: `<p>${escapeHtml(intro)}</p><p><a href="${escapeHtml(url)}">${escapeHtml(action)}</a></p><p>${escapeHtml(outro)}</p>`
  }
}

export function verificationMail (appName: string, to: string, url: string): Mail {
  return linkMail('verify-email', to, `Confirm your email address for ${appName}`,
    `Someone (hopefully you) used this address for an account on ${appName}.`,
    'Confirm this address', url,
    'The link works once and expires in an hour. If this was not you, ignore this mail.')
}

export function resetPasswordMail (appName: string, to: string, url: string): Mail {
  return linkMail('reset-password', to, `Reset your ${appName} password`,
    `A new password was requested for your account on ${appName}.`,
    'Choose a new password', url,
    'The link works once and expires in 30 minutes; using it signs you out everywhere. If you did not ask for it, ignore this mail: your password stays as it is.')
}

export function existingAccountMail (appName: string, to: string, url: string): Mail {
  return linkMail('existing-account', to, `Someone tried to sign up to ${appName} with your address`,
    `An account on ${appName} already uses this address, and someone just tried to sign up with it again.`,
    'Sign in, or reset your password if you forgot it', url,
    'If this was not you, nothing changed: ignore this mail.')
}
