// The test frontend: what a Docusaurus page does with `@auth-gateway/client`, without React.
import { createGatewayClient } from '@auth-gateway/client'

const gatewayUrl = new URLSearchParams(location.search).get('gateway') ?? 'http://localhost:8000'
const client = createGatewayClient({ baseURL: gatewayUrl })

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
    const { error } = await client.auth.signUp.email({ name: input('name').value, email: input('email').value, password: input('password').value })
    return error === null ? showSession() : authMessage(error)
  })
})

byId('sign-in').addEventListener('click', () => {
  void act('sign-in', async () => {
    const { error } = await client.auth.signIn.email({ email: input('email').value, password: input('password').value })
    return error === null ? showSession() : authMessage(error)
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

void act('session', showSession)
