import t from 'tap'
import { join } from 'node:path'
import { postJson, startTestStack, TEST_ORIGIN, uniqueEmail } from '../helper.ts'
import type { Stack } from '../../gateway/cli/stack.ts'
import { outboxMails, startMailServer } from '../mail.ts'
import type { ReceivedMail } from '../mail.ts'
import { until } from '../poll.ts'

/*
 * The account flows that need mail, through the gateway, with a real SMTP server on loopback and every
 * mail parsed: verification at sign-up, password reset, a sign-up with a taken address, changing the
 * address, and development's outbox.
 */

const PASSWORD = 'correct horse battery'
const NEW_PASSWORD = 'a new horse battery staple'

const mailServer = await startMailServer(t)
const stack = await startTestStack(t, { SMTP_URL: mailServer.url, MAIL_FROM: 'Docs <no-reply@docs.example.com>', REQUIRE_EMAIL_VERIFICATION: 'true' })

/** A link from a mail, on the gateway the test runs (the mail names `PUBLIC_URL`, its public address). */
function onGateway (target: Stack, link: string | null): string {
  if (link === null) throw new Error('the mail has no link')
  const url = new URL(link)
  t.equal(url.origin, new URL(target.config.publicUrl).origin, 'the link points at the gateway\'s public URL')
  return `${target.url}${url.pathname}${url.search}`
}

function sessionCookie (response: Response): string | null {
  const line = response.headers.getSetCookie().find((cookie) => cookie.includes('session_token='))
  return line === undefined ? null : line.split(';')[0]
}

const signIn = async (email: string, password = PASSWORD): Promise<Response> => postJson(fetch, `${stack.url}/auth/sign-in/email`, { email, password }, { origin: TEST_ORIGIN })
const protectedStatus = async (headers: Record<string, string>): Promise<number> => (await stack.gateway.inject({ method: 'GET', url: '/api/v1/profile', headers })).statusCode

async function signUpVerified (): Promise<{ email: string, cookie: string }> {
  const email = uniqueEmail('verified')
  const before = mailServer.mails.length
  t.equal((await postJson(fetch, `${stack.url}/auth/sign-up/email`, { email, password: PASSWORD, name: 'Verified Reader' }, { origin: TEST_ORIGIN })).status, 200)
  const mail = await mailServer.next(email, before)
  const verified = await fetch(onGateway(stack, mail.link), { redirect: 'manual' })
  const cookie = sessionCookie(verified)
  if (cookie === null) throw new Error(`verification answered ${verified.status} without a session`)
  return { email, cookie }
}

t.test('sign-up mails a verification link; sign-in is refused until it is followed', async (t) => {
  const email = uniqueEmail('verify')
  const signUp = await postJson(fetch, `${stack.url}/auth/sign-up/email`, { email, password: PASSWORD, name: 'New Reader', callbackURL: `${TEST_ORIGIN}/welcome` }, { origin: TEST_ORIGIN })
  t.equal(signUp.status, 200, 'signed up')
  t.equal(sessionCookie(signUp), null, 'no session before the address is verified')
  const mail = await mailServer.next(email)
  t.equal(mail.from, '"Docs" <no-reply@docs.example.com>', 'from MAIL_FROM')
  t.match(mail.subject, /Confirm your email address/)
  t.match(mail.html, /<a href="http:\/\/localhost:8000\/auth\/verify-email\?token=/, 'the HTML part links to the same place')

  const refused = await signIn(email)
  t.equal(refused.status, 403, 'sign-in before verification is refused')
  t.match(await refused.json(), { error: 'email_not_verified' }, 'with a code the client can show')

  const link = onGateway(stack, mail.link)
  t.equal(new URL(link).searchParams.get('callbackURL'), `${TEST_ORIGIN}/welcome`, 'the link carries the docs site\'s callback')
  const verified = await fetch(link, { redirect: 'manual' })
  t.equal(verified.status, 302, 'following the link redirects')
  t.equal(verified.headers.get('location'), `${TEST_ORIGIN}/welcome`, 'to the docs site')
  t.ok(sessionCookie(verified), 'and signs the reader in')
  t.equal((await signIn(email)).status, 200, 'sign-in works once verified')
  const again = await fetch(link, { redirect: 'manual' })
  t.equal(sessionCookie(again), null, 'a used link gives no new session')
})

t.test('a verification link names only allowed callback origins', async (t) => {
  const response = await postJson(fetch, `${stack.url}/auth/sign-up/email`, { email: uniqueEmail('evil'), password: PASSWORD, name: 'Evil', callbackURL: 'https://evil.example/phish' }, { origin: TEST_ORIGIN })
  t.equal(response.status, 400, 'a foreign callback is refused')
  t.match(await response.json(), { error: 'bad_redirect' })
  const resend = await postJson(fetch, `${stack.url}/auth/send-verification-email`, { email: uniqueEmail('evil'), callbackURL: '//evil.example' }, { origin: TEST_ORIGIN })
  t.equal(resend.status, 400, 'also on the resend endpoint')
})

t.test('the verification mail can be sent again, within the sign-in budget', async (t) => {
  const email = uniqueEmail('resend')
  await postJson(fetch, `${stack.url}/auth/sign-up/email`, { email, password: PASSWORD, name: 'Resend' }, { origin: TEST_ORIGIN })
  await mailServer.next(email)
  const before = mailServer.mails.length
  const resend = await postJson(fetch, `${stack.url}/auth/send-verification-email`, { email, callbackURL: `${TEST_ORIGIN}/` }, { origin: TEST_ORIGIN })
  t.equal(resend.status, 200)
  const second = await mailServer.next(email, before)
  t.match(second.subject, /Confirm your email address/, 'a second link')
})

t.test('signing up with a taken address looks like a success; the owner is told', async (t) => {
  const owner = await signUpVerified()
  const fresh = await postJson(fetch, `${stack.url}/auth/sign-up/email`, { email: uniqueEmail('fresh'), password: PASSWORD, name: 'Someone' }, { origin: TEST_ORIGIN })
  const before = mailServer.mails.length
  const taken = await postJson(fetch, `${stack.url}/auth/sign-up/email`, { email: owner.email, password: 'another password', name: 'Someone' }, { origin: TEST_ORIGIN })
  t.equal(taken.status, fresh.status, 'the same status as a new address')
  const [freshBody, takenBody] = [await fresh.json() as Record<string, unknown>, await taken.json() as Record<string, unknown>]
  t.same(Object.keys(takenBody).sort(), Object.keys(freshBody).sort(), 'the same shape')
  t.same(Object.keys(takenBody.user as object).sort(), Object.keys(freshBody.user as object).sort(), 'the same user fields')
  const notice = await mailServer.next(owner.email, before)
  t.match(notice.subject, /tried to sign up/, 'the owner gets a notice, not a verification link')
  t.equal((await signIn(owner.email, 'another password')).status, 401, 'the other password was not set')
  t.equal((await signIn(owner.email)).status, 200, 'the owner\'s still works')
})

t.test('password reset: a single-use link, every session and token refused after it', async (t) => {
  const reader = await signUpVerified()
  const token = (await (await fetch(`${stack.url}/auth/jwt`, { headers: { cookie: reader.cookie } })).json() as { token: string }).token
  t.equal(await protectedStatus({ cookie: reader.cookie }), 200)
  t.equal(await protectedStatus({ authorization: `Bearer ${token}` }), 200)

  const before = mailServer.mails.length
  const request = await postJson(fetch, `${stack.url}/auth/request-password-reset`, { email: reader.email, redirectTo: `${TEST_ORIGIN}/reset` }, { origin: TEST_ORIGIN })
  t.equal(request.status, 200)
  const body = await request.text()
  const mail = await mailServer.next(reader.email, before)
  t.match(mail.subject, /Reset your/)
  const link = await fetch(onGateway(stack, mail.link), { redirect: 'manual' })
  t.equal(link.status, 302, 'the link redirects to the docs site\'s reset page')
  const location = new URL(link.headers.get('location') ?? '')
  t.equal(location.origin + location.pathname, `${TEST_ORIGIN}/reset`)
  const resetToken = location.searchParams.get('token') ?? ''
  t.ok(resetToken.length > 10, 'with the token')

  const reset = await postJson(fetch, `${stack.url}/auth/reset-password`, { token: resetToken, newPassword: NEW_PASSWORD }, { origin: TEST_ORIGIN })
  t.equal(reset.status, 200, 'new password set')
  t.equal(await protectedStatus({ cookie: reader.cookie }), 401, 'the old session is refused')
  t.equal(await protectedStatus({ authorization: `Bearer ${token}` }), 401, 'the old token is refused')
  t.equal((await signIn(reader.email)).status, 401, 'the old password is refused')
  t.equal((await signIn(reader.email, NEW_PASSWORD)).status, 200, 'the new one works')
  const reused = await postJson(fetch, `${stack.url}/auth/reset-password`, { token: resetToken, newPassword: 'yet another password' }, { origin: TEST_ORIGIN })
  t.equal(reused.status, 400, 'the link works once')

  await t.test('an unknown address answers the same and gets nothing', async (t) => {
    const unknown = uniqueEmail('nobody')
    const sent = mailServer.mails.length
    const answer = await postJson(fetch, `${stack.url}/auth/request-password-reset`, { email: unknown, redirectTo: `${TEST_ORIGIN}/reset` }, { origin: TEST_ORIGIN })
    t.equal(answer.status, 200)
    t.equal(await answer.text(), body, 'the same body as for a known address')
    // A mail for a known address sent after it, as the marker that the queue has moved past it.
    await postJson(fetch, `${stack.url}/auth/request-password-reset`, { email: reader.email, redirectTo: `${TEST_ORIGIN}/reset` }, { origin: TEST_ORIGIN })
    await mailServer.next(reader.email, sent)
    await stack.authCore.mailer.idle()
    t.notOk(mailServer.mails.slice(sent).some((m) => m.to.includes(unknown)), 'no mail to the unknown address')
  })

  await t.test('a foreign redirect is refused', async (t) => {
    const answer = await postJson(fetch, `${stack.url}/auth/request-password-reset`, { email: reader.email, redirectTo: 'https://evil.example/reset' }, { origin: TEST_ORIGIN })
    t.equal(answer.status, 400)
  })
})

t.test('changing the address: the new one is used once its owner followed the link', async (t) => {
  const reader = await signUpVerified()
  const newEmail = uniqueEmail('moved')
  const before = mailServer.mails.length
  const change = await postJson(fetch, `${stack.url}/auth/change-email`, { newEmail, callbackURL: `${TEST_ORIGIN}/account` }, { origin: TEST_ORIGIN, cookie: reader.cookie })
  t.equal(change.status, 200)
  t.equal((await signIn(newEmail)).status, 401, 'not yet the new address')
  const mail = await mailServer.next(newEmail, before)
  const followed = await fetch(onGateway(stack, mail.link), { redirect: 'manual' })
  t.equal(followed.status, 302)
  t.equal((await signIn(newEmail)).status, 200, 'the new address signs in')
  t.equal((await signIn(reader.email)).status, 401, 'the old one no longer does')
})

t.test('a mail the server refuses is retried; the answer does not tell', async (t) => {
  const email = uniqueEmail('retry')
  mailServer.refuse(1)
  const signUp = await postJson(fetch, `${stack.url}/auth/sign-up/email`, { email, password: PASSWORD, name: 'Retry' }, { origin: TEST_ORIGIN })
  t.equal(signUp.status, 200, 'the answer does not wait for, or reveal, the mail')
  await until('the retried mail', 15_000, async () => mailServer.mails.find((m) => m.to.includes(email)))
  t.pass('delivered on a later attempt')
})

t.test('without SMTP_URL (development) every mail is an .eml file in DATA_DIR/outbox', async (t) => {
  const dev = await startTestStack(t, { REQUIRE_EMAIL_VERIFICATION: 'true' })
  const email = uniqueEmail('outbox')
  t.equal((await postJson(fetch, `${dev.url}/auth/sign-up/email`, { email, password: PASSWORD, name: 'Outbox' }, { origin: TEST_ORIGIN })).status, 200)
  await dev.authCore.mailer.idle()
  const outbox = join(dev.config.dataDir, 'outbox')
  const mails: ReceivedMail[] = await outboxMails(outbox)
  const mail = mails.find((m) => m.to.includes(email))
  t.ok(mail, 'the verification mail is in the outbox')
  const verified = await fetch(onGateway(dev, mail?.link ?? null), { redirect: 'manual' })
  t.equal(verified.status, 302, 'its link works')
  t.equal((await postJson(fetch, `${dev.url}/auth/sign-in/email`, { email, password: PASSWORD }, { origin: TEST_ORIGIN })).status, 200, 'and the reader signs in')
})
