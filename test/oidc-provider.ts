import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import Provider from 'oidc-provider'
import type { Teardown } from './helper.ts'

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

/**
 * A real OpenID Connect provider on loopback (the certified `oidc-provider`, with its development
 * sign-in and consent pages): one confidential client whose only redirect URI is `redirectUri`,
 * the code flow with PKCE required.
 */
export async function startTestIdp (t: Teardown, redirectUri: string): Promise<TestIdp> {
  const accounts = new Map<string, IdpAccount>()
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const clientId = 'docs-site'
  const clientSecret = 'docs-site-secret-of-at-least-thirty-two-chars'
  const provider = new Provider(issuer, {
    clients: [{ client_id: clientId, client_secret: clientSecret, redirect_uris: [redirectUri], grant_types: ['authorization_code'], response_types: ['code'] }],
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'groups', 'role', 'banned'] },
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
