import t from 'tap'
import { join } from 'node:path'
import { createGatewayClient } from '@auth-gateway/client'
import { cookieFetch, startTestStack, TEST_ORIGIN, uniqueEmail } from '../helper.ts'
import { outboxMails } from '../mail.ts'
import type { ReceivedMail } from '../mail.ts'
import { until } from '../poll.ts'

/*
 * The client's account flows against a real stack in development mode (mail in the outbox), with
 * verification required: sign-up, the verification link, a forgotten password, a new address.
 */

const PASSWORD = 'correct horse battery'
const stack = await startTestStack(t, { REQUIRE_EMAIL_VERIFICATION: 'true' })
const outbox = join(stack.config.dataDir, 'outbox')

/** The newest mail to `address` in the outbox (waiting for it). */
async function mailTo (address: string, seen = 0): Promise<ReceivedMail> {
  await stack.authCore.mailer.idle()
  return until(`a mail to ${address}`, 10_000, async () => (await outboxMails(outbox)).filter((mail) => mail.to.includes(address.toLowerCase()))[seen])
}

/** A mail's link, on the gateway the test runs. */
function onGateway (link: string | null): string {
  const url = new URL(link ?? '')
  return `${stack.url}${url.pathname}${url.search}`
}

t.test('sign-up, verification, forgotten password and a new address through the client', async (t) => {
  const browser = cookieFetch()
  const client = createGatewayClient({ baseURL: stack.url, fetch: browser })
  const email = uniqueEmail('client')
  const signUp = await client.auth.signUp.email({ email, password: PASSWORD, name: 'Client Reader', callbackURL: `${TEST_ORIGIN}/welcome` })
  t.equal(signUp.error, null, 'signed up')
  const refused = await client.auth.signIn.email({ email, password: PASSWORD })
  t.equal(refused.error?.status, 403, 'not before verification')
  t.equal(refused.error?.code, 'EMAIL_NOT_VERIFIED', 'with better-auth\'s code, for the page to show')

  const resent = await client.account.sendVerificationEmail(email, `${TEST_ORIGIN}/welcome`)
  t.same(resent, { data: { status: true }, error: null }, 'the link sent again')
  const verification = await mailTo(email, 1)
  await browser(onGateway(verification.link), { redirect: 'manual' })
  t.equal((await client.auth.getSession()).data?.user.email, email, 'following the link signs the reader in')

  const reset = await client.account.requestPasswordReset(email, `${TEST_ORIGIN}/reset`)
  t.same(reset.error, null)
  const unknown = await client.account.requestPasswordReset(uniqueEmail('nobody'), `${TEST_ORIGIN}/reset`)
  t.same(unknown, reset, 'an unknown address gets the same answer')
  const refusedRedirect = await client.account.requestPasswordReset(email, 'https://evil.example/reset')
  t.equal(refusedRedirect.error?.error, 'bad_redirect', 'a foreign redirect is refused')
  const mail = await mailTo(email, 2)
  const landed = await fetch(onGateway(mail.link), { redirect: 'manual' })
  const token = new URL(landed.headers.get('location') ?? '').searchParams.get('token') ?? ''
  const changed = await client.account.resetPassword(token, 'a brand new password')
  t.same(changed, { data: { status: true }, error: null }, 'new password set')
  t.equal((await client.auth.getSession()).data, null, 'the reset signed this browser out too')
  t.equal((await client.account.resetPassword(token, 'again and again')).error?.status, 400, 'the token works once')
  t.equal((await client.auth.signIn.email({ email, password: 'a brand new password' })).error, null, 'signed in with the new password')

  const changedPassword = await client.account.changePassword('a brand new password', 'yet another password', { revokeOtherSessions: true })
  t.equal(changedPassword.error, null, 'password changed with the current one')
  t.equal((await client.account.changePassword('wrong password', 'whatever password')).error?.status, 400, 'not without it')

  const newEmail = uniqueEmail('client-new')
  t.same(await client.account.changeEmail(newEmail, `${TEST_ORIGIN}/account`), { data: { status: true }, error: null })
  const confirm = await mailTo(newEmail)
  await browser(onGateway(confirm.link), { redirect: 'manual' })
  t.equal((await client.auth.getSession()).data?.user.email, newEmail, 'the new address is the account\'s')

  const listed = await client.sessions.list()
  t.equal(listed.data?.sessions.filter((session) => session.current).length, 1, 'the sessions, this one marked')
  const elsewhere = cookieFetch()
  await createGatewayClient({ baseURL: stack.url, fetch: elsewhere }).auth.signIn.email({ email: newEmail, password: 'yet another password' })
  const other = (await client.sessions.list()).data?.sessions.find((session) => !session.current)
  t.ok(other, 'another device')
  t.same(await client.sessions.revoke(other?.id ?? ''), { data: null, error: null }, 'signed out there')
  t.equal((await client.sessions.list()).data?.sessions.length, 1, 'only this one left')
  t.equal((await client.sessions.revokeOthers()).error, null, 'revoke the others (none left) works too')

  t.equal((await client.account.delete('wrong password')).error?.status, 400, 'deleting needs the password')
  t.same(await client.account.delete('yet another password'), { data: { success: true, message: 'User deleted' }, error: null }, 'account deleted')
  t.equal((await client.auth.getSession()).data, null, 'and signed out')
})
