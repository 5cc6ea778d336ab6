import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import { SMTPServer } from 'smtp-server'
import { simpleParser } from 'mailparser'
import type { ParsedMail } from 'mailparser'
import type { Teardown } from './helper.ts'
import { until } from './poll.ts'

/** A mail as received: its recipients, subject, text and the first link in it. */
export interface ReceivedMail {
  to: string[]
  from: string
  subject: string
  text: string
  html: string
  link: string | null
}

function received (parsed: ParsedMail, to: string[]): ReceivedMail {
  const text = parsed.text ?? ''
  return {
    to,
    from: parsed.from?.text ?? '',
    subject: parsed.subject ?? '',
    text,
    html: typeof parsed.html === 'string' ? parsed.html : '',
    link: /https?:\/\/\S+/.exec(text)?.[0] ?? null
  }
}

export interface MailServer {
  url: string
  mails: ReceivedMail[]
  /** Waits for the next mail to `address` that arrived after `after` mails (default: any so far). */
  next: (address: string, after?: number) => Promise<ReceivedMail>
  /** Refuses the next `count` deliveries with a temporary failure (451). */
  refuse: (count: number) => void
}

/** A real SMTP server on loopback (`smtp-server`), every mail parsed with `mailparser`. */
export async function startMailServer (t: Teardown): Promise<MailServer> {
  const mails: ReceivedMail[] = []
  let refusals = 0
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onRcptTo (_address, _session, callback) {
      if (refusals > 0) {
        refusals -= 1
        callback(Object.assign(new Error('Try again later'), { responseCode: 451 }))
        return
      }
      callback()
    },
    onData (stream, session, callback) {
      simpleParser(stream).then((parsed) => {
        mails.push(received(parsed, session.envelope.rcptTo.map((rcpt) => rcpt.address.toLowerCase())))
        callback()
      }, callback)
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { server.close(() => { resolve() }) }))
  const { port } = server.server.address() as AddressInfo
  return {
    url: `smtp://127.0.0.1:${port}`,
    mails,
    async next (address, after = 0) {
      const to = address.toLowerCase()
      return until(`a mail to ${address}`, 10_000, async () => mails.slice(after).find((mail) => mail.to.includes(to)), 20)
    },
    refuse (count) { refusals = count }
  }
}

/** The mails of an outbox folder (development without SMTP_URL), parsed. */
export async function outboxMails (dir: string): Promise<ReceivedMail[]> {
  let files: string[]
  try {
    files = readdirSync(dir).filter((name) => name.endsWith('.eml')).sort()
  } catch {
    return []
  }
  return Promise.all(files.map(async (name) => {
    const parsed = await simpleParser(readFileSync(join(dir, name)))
    const to = (Array.isArray(parsed.to) ? parsed.to : parsed.to === undefined ? [] : [parsed.to]).flatMap((address) => address.value.map((v) => (v.address ?? '').toLowerCase()))
    return received(parsed, to)
  }))
}

/** Mails as a test reads them: from the outbox folder (development without SMTP_URL). */
export interface Mailbox {
  /** How many mails there are so far. */
  count: () => Promise<number>
  /** The mails after the first `after`, in the order they were written. */
  since: (after: number) => Promise<ReceivedMail[]>
  /** Waits for the next mail to `address` after the first `after` mails (default: any so far). */
  next: (address: string, after?: number) => Promise<ReceivedMail>
}

/** The outbox of `npm start` alone (DATA_DIR/outbox, one `.eml` file a mail, named by time). */
export function outbox (dir: string): Mailbox {
  return {
    count: async () => (await outboxMails(dir)).length,
    since: async (after) => (await outboxMails(dir)).slice(after),
    async next (address, after = 0) {
      const to = address.toLowerCase()
      return until(`a mail to ${address} in ${dir}`, 10_000, async () => (await outboxMails(dir)).slice(after).find((mail) => mail.to.includes(to)), 20)
    }
  }
}
