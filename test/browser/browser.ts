import type { Browser, BrowserContext, Page } from 'playwright-core'
import { chromium } from 'playwright-core'
import type { Teardown } from '../temp-dir.ts'

/* Driving the test page (page/) in Debian's Chromium: launching, opening, clicking and waiting. */

export const CHROMIUM = '/usr/bin/chromium'

export interface Settled {
  status: string
  error: string | null
}

/** Waits until the page has finished more actions than `before` (`body[data-actions]`), then reads its status and error. */
export async function settle (page: Page, before: number): Promise<Settled> {
  await page.waitForFunction((count) => Number(document.body.dataset.actions ?? '0') > count, before)
  const error = page.locator('#error')
  return {
    status: (await page.locator('#status').textContent()) ?? '',
    error: await error.isVisible() ? await error.textContent() : null
  }
}

/** The number of actions the page has finished so far. */
export async function actionsOf (page: Page): Promise<number> {
  return Number(await page.locator('body').getAttribute('data-actions') ?? '0')
}

/** Clicks a button and waits until the page has finished the action it started. */
export async function click (page: Page, selector: string): Promise<Settled> {
  const before = await actionsOf(page)
  await page.click(selector)
  return settle(page, before)
}

/**
 * Opens the test page at `url` (the site's origin, or a URL on it), pointed at the gateway, once its
 * first session look-up has finished. Uncaught errors of the page go to `errors`.
 */
export async function openPage (context: BrowserContext, url: string, gateway: string, errors: string[]): Promise<{ page: Page, initial: Settled }> {
  const page = await context.newPage()
  page.on('pageerror', (err) => { errors.push(`${url}: ${err.message}`) })
  const target = new URL(url)
  target.searchParams.set('gateway', gateway)
  await page.goto(target.toString())
  return { page, initial: await settle(page, 0) }
}

export async function launchChromium (t: Teardown): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking']
  })
  t.teardown(() => browser.close())
  return browser
}

export async function newContext (t: Teardown, browser: Browser): Promise<BrowserContext> {
  const context = await browser.newContext({ viewport: { width: 900, height: 1100 } })
  t.teardown(() => context.close())
  return context
}
