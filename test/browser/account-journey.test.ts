import t from 'tap'
import type { Test } from 'tap'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { TOTP, URI } from 'otpauth'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import type { Stack } from '../../gateway/cli/stack.ts'
import { startTestStack, uniqueEmail } from '../helper.ts'
import type { Teardown } from '../helper.ts'
import { outbox } from '../mail.ts'
import type { Mailbox } from '../mail.ts'
import { sseEvent, startEventStream, streamingUpstream, within } from '../streaming-upstream.ts'
import type { StreamingUpstream } from '../streaming-upstream.ts'
import { actionsOf, CHROMIUM, click, launchChromium, newContext, openPage, settle } from './browser.ts'
import { buildFrontend, serveStatic } from './frontend.ts'
import type { StaticSite } from './frontend.ts'

// The journeys of issues 14, 15 and 16 in Chromium: the mail flows (verification with
// REQUIRE_EMAIL_VERIFICATION, password reset) through the outbox, as `npm start` alone runs them, two-factor sign-in with a
// real authenticator library, and a streamed answer growing on the page.
const PASSWORD = 'correct horse battery'
const NEW_PASSWORD = 'a new and longer passphrase'
const GUARD_MS = 10_000
const VERIFY_FIRST = 'Verify your email address first: follow the link in the mail we sent you, or resend it.'

interface Fixture {
  browser: Browser
  stack: Stack
  /** The outbox: as with `npm start` alone, mail goes to DATA_DIR/outbox (no SMTP_URL). */
  mail: Mailbox
  rag: StreamingUpstream
  site: StaticSite
  /** The gateway as the page addresses it: `http://localhost:<port>`. */
  gateway: string
}

const pageErrors: string[] = []

async function setUp (t: Teardown): Promise<Fixture> {
  const launched = launchChromium(t)
  const [rag, root] = await Promise.all([streamingUpstream(t), buildFrontend(t)])
  const site = await serveStatic(t, root)
  const stack = await startTestStack(t, { ALLOWED_ORIGINS: site.origin, RAG_UPSTREAM_URL: rag.url, HOST: '127.0.0.1', REQUIRE_EMAIL_VERIFICATION: 'true' })
  const mail = outbox(join(stack.config.dataDir, 'outbox'))
  const gateway = stack.url.replace('//127.0.0.1:', '//localhost:')
  return { browser: await launched, stack, mail, rag, site, gateway }
}

/** A mailed link, on the gateway this test runs (the mail names PUBLIC_URL, the gateway's public address). */
function onGateway (fixture: Fixture, link: string | null): string {
  if (link === null) throw new Error('the mail has no link')
  const url = new URL(link)
  const gateway = new URL(fixture.gateway)
  url.host = gateway.host
  return url.toString()
}

async function fillAccount (page: Page, email: string, password = PASSWORD): Promise<void> {
  await page.fill('#name', 'Ada Reader')
  await page.fill('#email', email)
  await page.fill('#password', password)
}

async function sessionText (page: Page): Promise<string | null> {
  return page.textContent('#session')
}

/** A six-digit code the authenticator would not show now, nor one period before or after. */
function wrongCode (authenticator: TOTP): string {
  const valid = new Set([-1, 0, 1].map((step) => authenticator.generate({ timestamp: Date.now() + step * authenticator.period * 1000 })))
  const code = ['000000', '111111', '222222', '333333'].find((candidate) => !valid.has(candidate))
  if (code === undefined) throw new Error('no wrong code left')
  return code
}

/** Signs up on the page and follows the verification link: the reader is then signed in there. */
async function verifiedReader (t: Test, fixture: Fixture, context: BrowserContext, email: string): Promise<Page> {
  const { page } = await openPage(context, fixture.site.origin, fixture.gateway, pageErrors)
  await fillAccount(page, email)
  const sent = await fixture.mail.count()
  t.same(await click(page, '#sign-up'), { status: 'sign-up: done', error: null }, 'signed up')
  const mail = await fixture.mail.next(email, sent)
  await page.goto(onGateway(fixture, mail.link))
  t.same(await settle(page, 0), { status: 'session: done', error: null })
  t.equal(await sessionText(page), `Signed in as ${email}`, 'the verification link signs the reader in on the page')
  return page
}

if (!existsSync(CHROMIUM)) {
  t.plan(0, `${CHROMIUM} is missing: install Chromium to run the browser tests (as root: apt-get install -y chromium)`)
} else {
  const fixture = await setUp(t)

  await t.test('email verification: sign-in is refused until the mailed link is followed; the resend button mails it again', async (t) => {
    const context = await newContext(t, fixture.browser)
    const { page } = await openPage(context, fixture.site.origin, fixture.gateway, pageErrors)
    const email = uniqueEmail('verify')
    await fillAccount(page, email)
    t.same(await click(page, '#sign-up'), { status: 'sign-up: done', error: null })
    t.equal(await sessionText(page), 'Not signed in', 'no session before the address is verified')
    t.equal(await page.textContent('#account-status'), 'Check your mailbox: the link in it signs you in')
    const first = await fixture.mail.next(email)
    t.match(first.subject, /verify|confirm/i, 'a verification mail')

    const refused = await click(page, '#sign-in')
    t.same(refused, { status: 'sign-in: failed', error: VERIFY_FIRST }, 'the page says why: the address is not verified')
    t.equal(await sessionText(page), 'Not signed in')

    const sent = await fixture.mail.count()
    t.same(await click(page, '#resend-verification'), { status: 'resend-verification: done', error: null })
    t.equal(await page.textContent('#account-status'), 'Verification mail sent')
    const again = await fixture.mail.next(email, sent)
    const link = new URL(onGateway(fixture, again.link))
    t.equal(link.searchParams.get('callbackURL'), `${fixture.site.origin}/?gateway=${encodeURIComponent(fixture.gateway)}`, 'the link lands on the docs page')

    await page.goto(link.toString())
    t.same(await settle(page, 0), { status: 'session: done', error: null })
    t.equal(new URL(page.url()).origin, fixture.site.origin, 'back on the docs site')
    t.equal(await sessionText(page), `Signed in as ${email}`, 'signed in by the link')
    const { rows } = await fixture.stack.pool.query<{ emailVerified: boolean }>('SELECT "emailVerified" FROM "user" WHERE email = $1', [email])
    t.same(rows, [{ emailVerified: true }])

    t.same(await click(page, '#sign-out'), { status: 'sign-out: done', error: null })
    await fillAccount(page, email)
    t.same(await click(page, '#sign-in'), { status: 'sign-in: done', error: null }, 'and the password signs in from now on')
    t.equal(await sessionText(page), `Signed in as ${email}`)
    t.same(pageErrors.splice(0), [], 'no uncaught errors on the page')
  })

  await t.test('forgot password: the link opens the page\'s form; the new password signs in, the old one fails, another browser is signed out', async (t) => {
    const email = uniqueEmail('reset')
    const other = await verifiedReader(t, fixture, await newContext(t, fixture.browser), email)
    const context = await newContext(t, fixture.browser)
    const { page } = await openPage(context, fixture.site.origin, fixture.gateway, pageErrors)
    t.equal(await page.isVisible('#reset'), false, 'no reset form without a token')

    const sent = await fixture.mail.count()
    await page.fill('#email', uniqueEmail('nobody'))
    const unknown = await click(page, '#forgot-password')
    const unknownStatus = await page.textContent('#account-status')
    await page.fill('#email', email)
    t.same(await click(page, '#forgot-password'), unknown, 'the same answer for an unknown address as for a known one')
    t.equal(await page.textContent('#account-status'), unknownStatus)
    const mail = await fixture.mail.next(email, sent)
    await fixture.stack.authCore.mailer.idle()
    t.same((await fixture.mail.since(sent)).map((m) => m.to), [[email.toLowerCase()]], 'and only the known address got a mail')

    await page.goto(onGateway(fixture, mail.link))
    await settle(page, 0)
    t.ok(new URL(page.url()).searchParams.get('token'), 'the link lands on the page with its token')
    t.equal(await page.isVisible('#reset'), true, 'the page shows the form')
    await page.fill('#new-password', NEW_PASSWORD)
    t.same(await click(page, '#reset-password'), { status: 'reset-password: done', error: null })
    t.equal(await page.textContent('#account-status'), 'Password changed: sign in with the new one')
    t.equal(new URL(page.url()).searchParams.get('token'), null, 'the spent token leaves the address bar')

    await fillAccount(page, email)
    t.same(await click(page, '#sign-in'), { status: 'sign-in: failed', error: 'Invalid email or password' }, 'the old password no longer works')
    await page.fill('#password', NEW_PASSWORD)
    t.same(await click(page, '#sign-in'), { status: 'sign-in: done', error: null }, 'the new one does')
    t.equal(await sessionText(page), `Signed in as ${email}`)

    await other.reload()
    await settle(other, 0)
    t.equal(await sessionText(other), 'Not signed in', 'the browser signed in before the reset is signed out')
    t.same(pageErrors.splice(0), [], 'no uncaught errors on the pages')
  })

  await t.test('two-factor: enrolment on the page with an authenticator, then sign-in asks for the code; a wrong one is refused', async (t) => {
    const email = uniqueEmail('totp')
    const page = await verifiedReader(t, fixture, await newContext(t, fixture.browser), email)
    await page.fill('#password', PASSWORD)
    t.same(await click(page, '#enable-2fa'), { status: 'enable-2fa: done', error: null })
    const uri = (await page.textContent('#totp-uri')) ?? ''
    t.match(uri, /^otpauth:\/\/totp\//, 'a QR-ready otpauth:// URI on the page')
    t.ok(((await page.textContent('#backup-codes')) ?? '').split(' ').length >= 8, 'backup codes shown')
    const authenticator = URI.parse(uri)
    if (!(authenticator instanceof TOTP)) throw new Error('not a TOTP URI')

    await page.fill('#totp-code', authenticator.generate())
    t.same(await click(page, '#verify-totp'), { status: 'verify-totp: done', error: null }, 'the first code confirms the enrolment')
    t.equal(await page.textContent('#account-status'), 'Two-factor sign-in is on')
    t.equal(await page.textContent('#totp-uri'), '', 'the secret does not stay on the screen')
    const { rows } = await fixture.stack.pool.query<{ on: boolean }>('SELECT "twoFactorEnabled" AS "on" FROM "user" WHERE email = $1', [email])
    t.same(rows, [{ on: true }])

    t.same(await click(page, '#sign-out'), { status: 'sign-out: done', error: null })
    await fillAccount(page, email)
    t.same(await click(page, '#sign-in'), { status: 'sign-in: done', error: null }, 'the password is right')
    t.equal(await sessionText(page), 'Enter the code from your authenticator', 'and the page asks for the second factor')
    t.equal(await page.getAttribute('body', 'data-second-factor'), 'true')

    await page.fill('#totp-code', wrongCode(authenticator))
    t.same(await click(page, '#verify-totp'), { status: 'verify-totp: failed', error: 'Invalid code' }, 'a wrong code is refused')
    t.equal(await sessionText(page), 'Enter the code from your authenticator', 'and the reader is not signed in')
    const right = authenticator.generate({ timestamp: Date.now() + authenticator.period * 1000 })
    // The next period's code: the enrolment's was spent (a code works once).
    await page.fill('#totp-code', right)
    t.same(await click(page, '#verify-totp'), { status: 'verify-totp: done', error: null })
    t.equal(await sessionText(page), `Signed in as ${email}`, 'signed in with the second factor')
    t.equal(await page.textContent('#account-status'), 'Signed in with your second factor')
    t.same(pageErrors.splice(0), [], 'no uncaught errors on the page')
  })

  await t.test('a streamed answer grows on the page as the upstream writes it; Stop closes the upstream call', async (t) => {
    const context = await newContext(t, fixture.browser)
    const { page } = await openPage(context, fixture.site.origin, fixture.gateway, pageErrors)
    await page.fill('#question', 'How does a humanoid estimate its joint positions?')
    const before = await actionsOf(page)
    await page.click('#ask-stream')
    const exchange = await fixture.rag.nextExchange()
    t.same(JSON.parse(exchange.body), { question: 'How does a humanoid estimate its joint positions?' })
    startEventStream(exchange)
    let shown = ''
    for (const token of ['Joint', ' encoders', ' and an IMU']) {
      await exchange.write(sseEvent({ token }))
      shown += token
      // The next event is written only once this one is on the page.
      await page.waitForFunction((text) => document.getElementById('answer')?.textContent === text, shown, { timeout: GUARD_MS })
      t.equal(await page.textContent('#answer'), shown, `the answer has grown to "${shown}"`)
    }
    t.equal(await page.textContent('#status'), 'ask-stream…', 'still streaming')
    exchange.res.end(sseEvent({ sources: ['ch3'] }, 'done'))
    t.same(await settle(page, before), { status: 'ask-stream: done', error: null }, 'done when the stream ends')
    t.equal(await page.textContent('#answer-state'), 'Answer complete')
    t.equal(await page.textContent('#answer'), shown, 'the closing event adds no text')

    const next = await actionsOf(page)
    await page.click('#ask-stream')
    const stopped = await fixture.rag.nextExchange()
    startEventStream(stopped)
    await stopped.write(sseEvent({ token: 'Partial' }))
    await page.waitForFunction(() => document.getElementById('answer')?.textContent === 'Partial', undefined, { timeout: GUARD_MS })
    await page.click('#stop')
    t.same(await settle(page, next), { status: 'ask-stream: done', error: null }, 'Stop ends the answer without an error')
    await t.resolves(within('the upstream sees its call closed', GUARD_MS, stopped.closed), 'the upstream call is closed')
    t.equal(await page.textContent('#answer'), 'Partial', 'what came stays on the page')
    t.equal(await page.textContent('#answer-state'), 'Stopped')

    const failing = await actionsOf(page)
    await page.click('#ask-stream')
    const cut = await fixture.rag.nextExchange()
    startEventStream(cut)
    await cut.write(sseEvent({ token: 'Half' }))
    await page.waitForFunction(() => document.getElementById('answer')?.textContent === 'Half', undefined, { timeout: GUARD_MS })
    cut.res.socket?.destroy()
    const broken = await settle(page, failing)
    t.equal(broken.status, 'ask-stream: failed', 'an upstream cut mid-answer ends it as a failure, not a hang')
    t.match(broken.error, /^The rag service /, 'with the gateway\'s message from its closing error event')
    t.equal(await page.textContent('#answer-state'), 'The answer failed')
    t.same(pageErrors.splice(0), [], 'no uncaught errors on the page')
  })
}
