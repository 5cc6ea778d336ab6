import t from 'tap'
import { existsSync } from 'node:fs'
import { startTestStack } from '../helper.ts'
import { freePort } from '../ports.ts'
import { startTestIdp } from '../oidc-provider.ts'
import { recordingUpstream } from '../upstream.ts'
import { CHROMIUM, click, launchChromium, newContext, openPage, settle } from './browser.ts'
import { buildFrontend, serveStatic } from './frontend.ts'

/*
 * "Sign in with corp" in a real browser (issue 18): the docs page on its own origin, the gateway,
 * and a real OpenID Connect provider (`oidc-provider`, its development sign-in and consent pages),
 * each on its own port. The page's button sends Chromium to the provider; the reader signs in and
 * consents there; the provider sends the browser back through the gateway, which lands it on the
 * page signed in; the page's question reaches the RAG service with the reader's identity.
 */
const PROVIDER = 'corp'

if (!existsSync(CHROMIUM)) {
  t.plan(0, `${CHROMIUM} is missing: install Chromium to run the browser tests (as root: apt-get install -y chromium)`)
} else {
  const launched = launchChromium(t)
  const root = await buildFrontend(t)
  const site = await serveStatic(t, root)
  const rag = await recordingUpstream(t, () => ({ body: { answer: 'Through the provider.' } }))
  // Page and gateway share the host name `localhost` (same site), as docs.example.com and api.example.com.
  const gatewayPort = await freePort()
  const gateway = `http://localhost:${gatewayPort}`
  const idp = await startTestIdp(t, `${gateway}/auth/callback/${PROVIDER}`)
  idp.accounts.set('ada', { email: 'ada@corp.example', emailVerified: true, name: 'Ada Corp' })
  const stack = await startTestStack(t, {
    PORT: String(gatewayPort),
    HOST: '127.0.0.1',
    PUBLIC_URL: gateway,
    ALLOWED_ORIGINS: site.origin,
    RAG_UPSTREAM_URL: rag.url,
    OIDC_ISSUER: idp.issuer,
    OIDC_CLIENT_ID: idp.clientId,
    OIDC_CLIENT_SECRET: idp.clientSecret,
    OIDC_PROVIDER_ID: PROVIDER
  })
  const browser = await launched
  const errors: string[] = []

  await t.test('from the page\'s button through the provider\'s sign-in and consent, back signed in; RAG hears who asks', async (t) => {
    const context = await newContext(t, browser)
    const { page, initial } = await openPage(context, site.origin, gateway, errors)
    t.same(initial, { status: 'session: done', error: null })
    t.equal(await page.textContent('#session'), 'Not signed in')
    t.equal(await page.textContent(`button[data-provider="${PROVIDER}"]`), `Sign in with ${PROVIDER}`, 'the page offers the configured provider')

    await page.click(`button[data-provider="${PROVIDER}"]`)
    await page.waitForURL((url) => url.origin === idp.issuer)
    t.pass('the browser is at the provider')
    await page.fill('input[name="login"]', 'ada')
    await page.fill('input[name="password"]', 'any password')
    await page.click('button[type="submit"]')
    // The consent page, then back through the gateway's callback to the page.
    await page.waitForSelector('button[type="submit"]')
    await page.click('button[type="submit"]')
    await page.waitForURL((url) => url.origin === site.origin)
    t.same(await settle(page, 0), { status: 'session: done', error: null })
    t.equal(await page.textContent('#session'), 'Signed in as ada@corp.example', 'back on the page, signed in')

    const cookies = await context.cookies(gateway)
    t.ok(cookies.some((cookie) => cookie.name.endsWith('session_token') && cookie.httpOnly), 'an HttpOnly session cookie on the gateway\'s origin')
    await page.fill('#question', 'Who am I?')
    t.same(await click(page, '#ask'), { status: 'ask: done', error: null })
    t.equal(await page.textContent('#answer'), 'Through the provider.')
    const { rows } = await stack.pool.query<{ id: string }>('SELECT id FROM "user" WHERE email = $1', ['ada@corp.example'])
    t.equal(rag.requests.at(-1)?.headers['x-user-id'], rows[0]?.id, 'the RAG service hears the provider\'s reader')
    t.same(errors, [], 'no page error')
  })
}
