// The test frontend: what a Docusaurus page does with `@auth-gateway/client`, without React.
import { createGatewayClient } from '@auth-gateway/client'

const query = new URLSearchParams(location.search)
const gatewayUrl = query.get('gateway') ?? 'http://localhost:8000'
const client = createGatewayClient({ baseURL: gatewayUrl })
/** Where mailed links land: this page, on this site (an allowed origin), pointed at the same gateway. */
const landing = `${location.origin}/?gateway=${encodeURIComponent(gatewayUrl)}`

function byId<T extends HTMLElement = HTMLElement> (id: string): T {
  const element = document.getElementById(id)
  if (element === null) throw new Error(`#${id} is missing from the page`)
  return element as T
}

const input = (id: string): HTMLInputElement => byId<HTMLInputElement>(id)

function showError (message: string | null): void {
  const error = byId('error')
  error.textContent = message ?? ''
  error.hidden = message === null
}

/** What the page says when sign-in is refused because the address is not verified yet. */
const VERIFY_FIRST = 'Verify your email address first: follow the link in the mail we sent you, or resend it.'

/** better-auth's errors carry `message` (and sometimes only `statusText`). */
function authMessage (error: { message?: string, statusText?: string, status?: number }): string {
  return error.message ?? error.statusText ?? `The gateway answered ${String(error.status)}`
}

let completed = 0

/**
 * Runs one user action; its failure message lands in `#error`. `body[data-actions]` counts finished
 * actions so a test knows when the page has settled after a click.
 */
async function act (name: string, run: () => Promise<string | null>): Promise<void> {
  showError(null)
  byId('status').textContent = `${name}…`
  let failure: string | null
  try {
    failure = await run()
  } catch (err) {
    // better-auth's client rejects when no answer can be read (network down, CORS refusal).
    failure = `The gateway could not be reached: ${err instanceof Error ? err.message : String(err)}`
  }
  showError(failure)
  byId('status').textContent = `${name}: ${failure === null ? 'done' : 'failed'}`
  completed += 1
  document.body.dataset.actions = String(completed)
}

function fillProfile (profile: { softwareBackground: string | null, hardwareBackground: string | null, interestArea: string | null, consentGiven: boolean }): void {
  input('software-background').value = profile.softwareBackground ?? ''
  input('hardware-background').value = profile.hardwareBackground ?? ''
  input('interest-area').value = profile.interestArea ?? ''
  input('consent').checked = profile.consentGiven
}

async function showSession (): Promise<string | null> {
  let session: Awaited<ReturnType<typeof client.auth.getSession>>
  try {
    session = await client.auth.getSession()
  } catch (err) {
    byId('session').textContent = 'Session unavailable'
    throw err
  }
  const { data, error } = session
  if (error !== null) {
    byId('session').textContent = 'Session unavailable'
    return authMessage(error)
  }
  document.body.dataset.secondFactor = 'false'
  document.body.dataset.signedIn = String(data !== null)
  if (data === null) {
    byId('session').textContent = 'Not signed in'
    fillProfile({ softwareBackground: null, hardwareBackground: null, interestArea: null, consentGiven: false })
    return null
  }
  byId('session').textContent = `Signed in as ${data.user.email}`
  const profile = await client.profile.get()
  if (profile.error !== null) return profile.error.message
  fillProfile(profile.data)
  return null
}

byId('sign-up').addEventListener('click', () => {
  void act('sign-up', async () => {
    // The verification link (when addresses must be verified) lands back on this page.
    byId('account-status').textContent = ''
    const { data, error } = await client.auth.signUp.email({ name: input('name').value, email: input('email').value, password: input('password').value, callbackURL: landing })
    if (error !== null) return authMessage(error)
    // With REQUIRE_EMAIL_VERIFICATION no session comes back: the mailed link signs the reader in.
    if (data.token === null) byId('account-status').textContent = 'Check your mailbox: the link in it signs you in'
    return showSession()
  })
})

byId('sign-in').addEventListener('click', () => {
  void act('sign-in', async () => {
    const { data, error } = await client.auth.signIn.email({ email: input('email').value, password: input('password').value })
    if (error !== null) return error.code === 'EMAIL_NOT_VERIFIED' ? VERIFY_FIRST : authMessage(error)
    // Two-factor sign-in: the password was right; the code comes next (#verify-totp).
    if (data !== null && 'twoFactorRedirect' in data && data.twoFactorRedirect === true) {
      document.body.dataset.secondFactor = 'true'
      byId('session').textContent = 'Enter the code from your authenticator'
      return null
    }
    return showSession()
  })
})

byId('resend-verification').addEventListener('click', () => {
  void act('resend-verification', async () => {
    const { error } = await client.account.sendVerificationEmail(input('email').value, landing)
    if (error !== null) return error.message
    byId('account-status').textContent = 'Verification mail sent'
    return null
  })
})

byId('forgot-password').addEventListener('click', () => {
  void act('forgot-password', async () => {
    const { error } = await client.account.requestPasswordReset(input('email').value, landing)
    if (error !== null) return error.message
    byId('account-status').textContent = 'If that address has an account, a reset link is on its way'
    return null
  })
})

// A reset link lands here with `?token=`: the form to choose the new password.
const resetToken = query.get('token')
byId('reset').hidden = resetToken === null
byId('reset-password').addEventListener('click', () => {
  void act('reset-password', async () => {
    const { error } = await client.account.resetPassword(resetToken ?? '', input('new-password').value)
    if (error !== null) return error.message
    byId('account-status').textContent = 'Password changed: sign in with the new one'
    byId('reset').hidden = true
    // The token is spent: keep it out of the address bar and the history.
    history.replaceState(null, '', landing)
    return null
  })
})

byId('enable-2fa').addEventListener('click', () => {
  void act('enable-2fa', async () => {
    const { data, error } = await client.auth.twoFactor.enable({ password: input('password').value })
    if (error !== null) return authMessage(error)
    if (data.method !== 'totp') return `Expected an authenticator enrolment, got ${data.method}`
    byId('totp-uri').textContent = data.totpURI
    byId('backup-codes').textContent = data.backupCodes.join(' ')
    return null
  })
})

// Confirms the enrolment, or answers the sign-in challenge.
byId('verify-totp').addEventListener('click', () => {
  void act('verify-totp', async () => {
    const challenged = document.body.dataset.secondFactor === 'true'
    const { error } = await client.auth.twoFactor.verifyTotp({ code: input('totp-code').value })
    if (error !== null) return authMessage(error)
    byId('account-status').textContent = challenged ? 'Signed in with your second factor' : 'Two-factor sign-in is on'
    if (!challenged) {
      // Enrolled: the secret and the codes are not left on the screen.
      byId('totp-uri').textContent = ''
      byId('backup-codes').textContent = ''
    }
    input('totp-code').value = ''
    return showSession()
  })
})

byId('sign-out').addEventListener('click', () => {
  void act('sign-out', async () => {
    const { error } = await client.auth.signOut()
    if (error !== null) return authMessage(error)
    byId('profile-status').textContent = ''
    byId('answer').textContent = ''
    return showSession()
  })
})

byId('save-profile').addEventListener('click', () => {
  void act('save-profile', async () => {
    byId('profile-status').textContent = ''
    const { data, error } = await client.profile.save({
      softwareBackground: input('software-background').value,
      hardwareBackground: input('hardware-background').value,
      interestArea: input('interest-area').value,
      consentGiven: input('consent').checked
    })
    if (error !== null) return error.message
    fillProfile(data)
    byId('profile-status').textContent = data.consentGiven ? 'Profile saved with your consent' : 'Profile saved'
    return null
  })
})

byId('ask').addEventListener('click', () => {
  void act('ask', async () => {
    byId('answer').textContent = ''
    const { data, error } = await client.rag.query<{ answer?: unknown }>({ question: input('question').value })
    if (error !== null) return error.message
    byId('answer').textContent = typeof data?.answer === 'string' ? data.answer : JSON.stringify(data)
    return null
  })
})

let streaming: AbortController | null = null

/** A streamed event's text: `{ "token": "…" }` as the RAG service sends it (docs/streaming.md); anything else adds nothing. */
function tokenOf (data: string): string {
  try {
    const { token } = JSON.parse(data) as { token?: unknown }
    return typeof token === 'string' ? token : ''
  } catch {
    return ''
  }
}

byId('ask-stream').addEventListener('click', () => {
  void act('ask-stream', async () => {
    const answer = byId('answer')
    answer.textContent = ''
    const state = byId('answer-state')
    state.textContent = 'Answering…'
    const controller = new AbortController()
    streaming = controller
    try {
      for await (const event of client.rag.stream('/api/v1/query', { question: input('question').value }, { signal: controller.signal })) {
        if (event.error !== undefined) {
          state.textContent = 'The answer failed'
          return event.error.message
        }
        if (event.event === 'message' || event.event === 'token') answer.textContent += tokenOf(event.data)
      }
      state.textContent = controller.signal.aborted ? 'Stopped' : 'Answer complete'
      return null
    } finally {
      streaming = null
    }
  })
})

byId('stop').addEventListener('click', () => { streaming?.abort() })

/** A "Sign in with …" button for each provider the gateway offers (`GET /auth/providers`). */
async function showProviders (): Promise<void> {
  const { data } = await client.providers()
  for (const { id } of data?.providers ?? []) {
    const button = document.createElement('button')
    button.type = 'button'
    button.className = 'provider'
    button.dataset.provider = id
    button.textContent = `Sign in with ${id}`
    // The browser leaves for the provider, and comes back to this page signed in.
    button.addEventListener('click', () => {
      void act(`sign-in-${id}`, async () => {
        const { error } = await client.auth.signIn.social({ provider: id, callbackURL: landing, errorCallbackURL: landing })
        return error === null ? null : authMessage(error)
      })
    })
    byId('providers').append(button)
  }
}

void act('session', async () => {
  await showProviders()
  return showSession()
})
