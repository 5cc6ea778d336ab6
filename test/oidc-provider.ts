import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import Provider from 'oidc-provider'
import { startTestStack } from './helper.ts'
import type { Teardown } from './helper.ts'
import { freePort } from './ports.ts'
import type { Stack } from '../gateway/cli/stack.ts'
import type { Env } from '../shared/config.ts'

/** A person at the test identity provider. */
export interface IdpAccount {
  email: string
  emailVerified: boolean
  name: string
  /** Extra claims (e.g. a role claim), released with the `profile` scope. */
  claims?: Record<string, unknown>
}

export interface TestIdp {
  issuer: string
  clientId: string
  clientSecret: string
  /** Accounts by the login typed at the provider's development sign-in form. */
  accounts: Map<string, IdpAccount>
}

export interface TestIdpOptions {
  /** Claims released with the `profile` scope besides `name`. @default ['groups', 'role', 'banned', 'team', 'clearance'] */
  profileClaims?: readonly string[]
  /** The scopes' claims in the ID token too, as Entra, Google or Keycloak put them (better-auth then reads the ID token, not userinfo). @default false */
  claimsInIdToken?: boolean
}

/**
 * A real OpenID Connect provider on loopback (the certified `oidc-provider`, with its development
 * sign-in and consent pages): one confidential client whose only redirect URI is `redirectUri`,
 * the code flow with PKCE required.
 */
export async function startTestIdp (t: Teardown, redirectUri: string, options: TestIdpOptions = {}): Promise<TestIdp> {
  const accounts = new Map<string, IdpAccount>()
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const clientId = 'docs-site'
  const clientSecret = 'docs-site-secret-of-at-least-thirty-two-chars'
  const provider = new Provider(issuer, {
    clients: [{ client_id: clientId, client_secret: clientSecret, redirect_uris: [redirectUri], grant_types: ['authorization_code'], response_types: ['code'] }],
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', ...(options.profileClaims ?? ['groups', 'role', 'banned', 'team', 'clearance'])] },
    conformIdTokenClaims: options.claimsInIdToken !== true,
    pkce: { required: () => true },
    cookies: { keys: ['test-idp-cookie-key-0123456789'] },
    features: { devInteractions: { enabled: true } },
    async findAccount (_ctx, sub) {
      const account = accounts.get(sub)
      if (account === undefined) return undefined
      return {
        accountId: sub,
        claims: async () => ({ sub, email: account.email, email_verified: account.emailVerified, name: account.name, ...account.claims })
      }
    }
  })
  server.on('request', provider.callback())
  t.teardown(() => new Promise<void>((resolve) => {
    server.closeAllConnections()
    server.close(() => { resolve() })
  }))
  return { issuer, clientId, clientSecret, accounts }
}

/**
 * A browser's cookie jar and redirect-following, for one host (cookies go by host, not port, as in
 * a browser): `go` fetches without following redirects and keeps the cookies.
 */
export function browserJar (): { go: (url: string, init?: RequestInit) => Promise<Response>, cookies: Map<string, string> } {
  const cookies = new Map<string, string>()
  return {
    cookies,
    async go (url, init = {}) {
      const headers = new Headers(init.headers)
      if (cookies.size > 0) headers.set('cookie', [...cookies].map(([name, value]) => `${name}=${value}`).join('; '))
      const response = await fetch(url, { ...init, headers, redirect: 'manual' })
      for (const line of response.headers.getSetCookie()) {
        const [pair, ...attributes] = line.split(';')
        const at = pair.indexOf('=')
        const name = pair.slice(0, at).trim()
        const value = pair.slice(at + 1).trim()
        if (value === '' || attributes.some((a) => /^\s*(max-age=0|expires=thu, 01 jan 1970)/i.test(a))) cookies.delete(name)
        else cookies.set(name, value)
      }
      return response
    }
  }
}

type Jar = ReturnType<typeof browserJar>

/** The session cookie a jar holds for the gateway, as a `Cookie` header's pair. */
export const sessionCookieOf = (browser: Jar): string | undefined => [...browser.cookies].find(([name]) => name.endsWith('session_token'))?.join('=')

/**
 * What a browser does from a page's "Sign in with <provider>" to the provider's redirect back to the
 * gateway (not followed): the sign-in request, then the provider's development sign-in form (any
 * password) and consent page. The provider's authorization URL, and the callback URL to follow.
 */
export async function signInAtIdp (browser: Jar, options: { gateway: string, provider: string, login: string, callbackURL: string, origin?: string }): Promise<{ authorize: URL, callback: string }> {
  const origin = options.origin ?? new URL(options.callbackURL).origin
  const started = await browser.go(`${options.gateway}/auth/sign-in/social`, { method: 'POST', headers: { 'content-type': 'application/json', origin }, body: JSON.stringify({ provider: options.provider, callbackURL: options.callbackURL }) })
  if (started.status !== 200) throw new Error(`sign-in/social answered ${started.status}: ${await started.text()}`)
  const { url } = await started.json() as { url: string }
  let next = url
  for (let hop = 0; hop < 12; hop++) {
    const response = await browser.go(next)
    if (response.status >= 300 && response.status < 400) {
      const location = new URL(response.headers.get('location') ?? '', next).toString()
      await response.arrayBuffer()
      if (location.startsWith(options.gateway)) return { authorize: new URL(url), callback: location }
      next = location
      continue
    }
    const page = await response.text()
    if (response.status !== 200) throw new Error(`the provider answered ${response.status}: ${page.slice(0, 300)}`)
    const form = new URLSearchParams(page.includes('name="login"') ? { prompt: 'login', login: options.login, password: 'any' } : { prompt: 'consent' })
    const submitted = await browser.go(next, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form.toString() })
    next = new URL(submitted.headers.get('location') ?? '', next).toString()
    await submitted.arrayBuffer()
  }
  throw new Error('the provider never redirected back')
}

export interface OidcStack {
  /** The gateway's public URL, where it listens: the provider sends browsers back to it. */
  publicUrl: string
  idp: TestIdp
  stack: Stack
}

/** A test provider and the whole stack signing in with it as `provider`, the gateway on a port of its own at `PUBLIC_URL`. */
export async function startOidcStack (t: Teardown, provider: string, env: Env = {}, idpOptions: TestIdpOptions = {}): Promise<OidcStack> {
  const port = await freePort()
  const publicUrl = `http://127.0.0.1:${port}`
  const idp = await startTestIdp(t, `${publicUrl}/auth/callback/${provider}`, idpOptions)
  const stack = await startTestStack(t, {
    PORT: String(port),
    PUBLIC_URL: publicUrl,
    OIDC_ISSUER: idp.issuer,
    OIDC_CLIENT_ID: idp.clientId,
    OIDC_CLIENT_SECRET: idp.clientSecret,
    OIDC_PROVIDER_ID: provider,
    ...env
  })
  return { publicUrl, idp, stack }
}
