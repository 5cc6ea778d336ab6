import t from 'tap'
import type { Test } from 'tap'
import { existsSync, mkdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import type { Stack } from '../../gateway/cli/stack.ts'
import { startTestStack, uniqueEmail, verifyIdentityToken } from '../helper.ts'
import type { Teardown } from '../helper.ts'
import { recordingUpstream } from '../upstream.ts'
import type { RecordingUpstream } from '../upstream.ts'
import { CHROMIUM, click, launchChromium, newContext as newBrowserContext, openPage as openTestPage, settle } from './browser.ts'
import type { Settled } from './browser.ts'
import { buildFrontend, serveStatic } from './frontend.ts'
import type { StaticSite } from './frontend.ts'

const SCREENSHOT_DIR = fileURLToPath(new URL('../../.tap/screenshots/', import.meta.url))
const PASSWORD = 'correct horse battery'
const CONSENT_MESSAGE = 'Consent must be given to store background information'
const ANSWER = 'A humanoid keeps its balance by holding its zero-moment point inside the support polygon.'
const BACKGROUND = { software: 'Python and ROS 2', hardware: 'Jetson Orin, Unitree Go2', interest: 'humanoid locomotion' }

interface Fixture {
  browser: Browser
  stack: Stack
  rag: RecordingUpstream
  /** The gateway as the page addresses it: `http://localhost:<port>`. */
  gateway: string
  allowed: StaticSite
  disallowed: StaticSite
}

// Uncaught errors of every page; each test checks that its pages raised none.
const pageErrors: string[] = []

async function openPage (context: BrowserContext, site: StaticSite, gateway: string): Promise<{ page: Page, initial: Settled }> {
  return openTestPage(context, site.origin, gateway, pageErrors)
}

async function fillProfile (page: Page, consent: boolean, values = BACKGROUND): Promise<void> {
  await page.fill('#software-background', values.software)
  await page.fill('#hardware-background', values.hardware)
  await page.fill('#interest-area', values.interest)
  await page.setChecked('#consent', consent)
}

async function signUp (t: Test, page: Page, email: string): Promise<void> {
  await page.fill('#name', 'Ada Reader')
  await page.fill('#email', email)
  await page.fill('#password', PASSWORD)
  t.same(await click(page, '#sign-up'), { status: 'sign-up: done', error: null }, 'signed up')
}

async function userIdOf (stack: Stack, email: string): Promise<string> {
  const { rows } = await stack.pool.query<{ id: string }>('SELECT id FROM "user" WHERE email = $1', [email])
  return rows[0].id
}

async function ask (page: Page, question: string): Promise<Settled> {
  await page.fill('#question', question)
  return click(page, '#ask')
}

function lastRagRequest (rag: RecordingUpstream) {
  const recorded = rag.requests.at(-1)
  if (recorded === undefined) throw new Error('the RAG upstream received nothing')
  return recorded
}

async function setUp (t: Teardown): Promise<Fixture> {
  // Chromium starts while the page is bundled and the stack starts: neither needs the other.
  const launched = launchChromium(t)
  const rag = await recordingUpstream(t, () => ({ body: { answer: ANSWER } }))
  const root = await buildFrontend(t)
  const allowed = await serveStatic(t, root)
  const disallowed = await serveStatic(t, root)
  const stack = await startTestStack(t, { ALLOWED_ORIGINS: allowed.origin, RAG_UPSTREAM_URL: rag.url, HOST: '127.0.0.1' })
  // Page and gateway share the host name `localhost` (same site, different ports), so the
  // SameSite=Lax session cookie flows with credentialed fetches, as with docs.example.com → api.example.com.
  const gateway = stack.url.replace('//127.0.0.1:', '//localhost:')
  return { browser: await launched, stack, rag, gateway, allowed, disallowed }
}

async function newContext (t: Teardown, fixture: Fixture): Promise<BrowserContext> {
  return newBrowserContext(t, fixture.browser)
}

if (!existsSync(CHROMIUM)) {
  t.plan(0, `${CHROMIUM} is missing: install Chromium to run the browser tests (as root: apt-get install -y chromium)`)
} else {
  const fixture = await setUp(t)
  const { stack, rag, gateway } = fixture

  await t.test('the reader journey: anonymous question, sign-up, sign-out, sign-in, profile with consent, question, sign-out', async (t) => {
    const context = await newContext(t, fixture)
    const { page, initial } = await openPage(context, fixture.allowed, gateway)
    t.same(initial, { status: 'session: done', error: null })
    t.equal(await page.textContent('#session'), 'Not signed in')

    t.same(await ask(page, 'How does a humanoid balance?'), { status: 'ask: done', error: null })
    t.equal(await page.textContent('#answer'), ANSWER, 'an anonymous reader gets an answer')
    const anonymous = lastRagRequest(rag)
    t.same(JSON.parse(anonymous.body), { question: 'How does a humanoid balance?' })
    t.notOk(anonymous.headers['x-user-id'], 'no identity before sign-in')
    t.notOk(anonymous.headers.authorization)

    const email = uniqueEmail('browser')
    await signUp(t, page, email)
    t.equal(await page.textContent('#session'), `Signed in as ${email}`)
    const userId = await userIdOf(stack, email)

    t.same(await click(page, '#sign-out'), { status: 'sign-out: done', error: null })
    t.equal(await page.textContent('#session'), 'Not signed in')
    await page.fill('#email', email)
    await page.fill('#password', PASSWORD)
    t.same(await click(page, '#sign-in'), { status: 'sign-in: done', error: null })
    t.equal(await page.textContent('#session'), `Signed in as ${email}`)

    await fillProfile(page, true)
    t.same(await click(page, '#save-profile'), { status: 'save-profile: done', error: null })
    t.equal(await page.textContent('#profile-status'), 'Profile saved with your consent')

    await page.reload()
    t.same(await settle(page, 0), { status: 'session: done', error: null })
    t.equal(await page.textContent('#session'), `Signed in as ${email}`, 'the session survives a reload')
    t.equal(await page.inputValue('#software-background'), BACKGROUND.software, 'the saved profile is read back')
    t.equal(await page.inputValue('#interest-area'), BACKGROUND.interest)
    t.ok(await page.isChecked('#consent'))

    t.same(await ask(page, 'Which sensors does a biped need?'), { status: 'ask: done', error: null })
    t.equal(await page.textContent('#answer'), ANSWER)
    const signedIn = lastRagRequest(rag)
    t.equal(signedIn.headers['x-user-id'], userId, 'X-User-Id after sign-in')
    const bearer = /^Bearer (\S+)$/.exec(signedIn.headers.authorization ?? '')
    t.ok(bearer, 'a bearer token after sign-in')
    const { payload } = await verifyIdentityToken(stack.url, bearer?.[1] ?? '', 'rag')
    t.match(payload, { sub: userId, email, softwareBackground: BACKGROUND.software, interestArea: BACKGROUND.interest, consentVersion: '1' }, 'the token carries the consented profile')

    mkdirSync(SCREENSHOT_DIR, { recursive: true })
    const screenshot = await page.screenshot({ path: `${SCREENSHOT_DIR}signed-in.png`, fullPage: true })
    t.ok(screenshot.length > 10_000, `screenshot saved to ${SCREENSHOT_DIR}signed-in.png`)

    t.same(await click(page, '#sign-out'), { status: 'sign-out: done', error: null })
    t.equal(await page.textContent('#session'), 'Not signed in')
    t.same(await ask(page, 'And after sign-out?'), { status: 'ask: done', error: null })
    const afterSignOut = lastRagRequest(rag)
    t.notOk(afterSignOut.headers['x-user-id'], 'no identity after sign-out')
    t.notOk(afterSignOut.headers.authorization)
    t.same(pageErrors.splice(0), [], 'no uncaught errors on the page')
  })

  await t.test('the profile form refuses background data without consent and shows the server message', async (t) => {
    const context = await newContext(t, fixture)
    const { page } = await openPage(context, fixture.allowed, gateway)
    const email = uniqueEmail('no-consent')
    await signUp(t, page, email)

    await fillProfile(page, false)
    t.same(await click(page, '#save-profile'), { status: 'save-profile: failed', error: CONSENT_MESSAGE })
    t.equal(await page.textContent('#profile-status'), '', 'nothing claims to be saved')
    const { rows } = await stack.pool.query('SELECT 1 FROM profile WHERE user_id = $1', [await userIdOf(stack, email)])
    t.equal(rows.length, 0, 'nothing was written')

    await page.setChecked('#consent', true)
    t.same(await click(page, '#save-profile'), { status: 'save-profile: done', error: null }, 'with consent it saves')
    t.equal(await page.locator('#error').isVisible(), false, 'the error is cleared')
    t.same(pageErrors.splice(0), [], 'no uncaught errors on the page')
  })

  await t.test('the same page on a disallowed origin can neither read the session nor call the profile API', async (t) => {
    const context = await newContext(t, fixture)
    const { page: home } = await openPage(context, fixture.allowed, gateway)
    const email = uniqueEmail('cross-origin')
    await signUp(t, home, email)
    await fillProfile(home, true)
    t.same(await click(home, '#save-profile'), { status: 'save-profile: done', error: null })
    const userId = await userIdOf(stack, email)
    const before = await stack.pool.query('SELECT * FROM profile WHERE user_id = $1', [userId])
    const cookies = await context.cookies(gateway)
    t.ok(cookies.some((cookie) => cookie.name.endsWith('session_token')), 'the browser holds a session cookie for the gateway')

    const { page: foreign, initial } = await openPage(context, fixture.disallowed, gateway)
    t.equal(initial.status, 'session: failed', 'the session look-up fails')
    t.match(initial.error, /^The gateway could not be reached/)
    t.equal(await foreign.textContent('#session'), 'Session unavailable')
    t.notMatch(await foreign.content(), email, 'the email never reaches the page')

    await fillProfile(foreign, true, { software: 'overwritten', hardware: 'overwritten', interest: 'overwritten' })
    const save = await click(foreign, '#save-profile')
    t.equal(save.status, 'save-profile: failed')
    t.match(save.error, /^The gateway could not be reached/, 'the client gets a network error')
    const after = await stack.pool.query('SELECT * FROM profile WHERE user_id = $1', [userId])
    t.same(after.rows, before.rows, 'the profile is unchanged')

    const { page: again } = await openPage(context, fixture.allowed, gateway)
    t.equal(await again.textContent('#session'), `Signed in as ${email}`, 'the allowed origin still reads the session')
    t.same(pageErrors.splice(0), [], 'no uncaught errors on the pages')
  })
}
