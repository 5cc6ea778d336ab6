import { createAuthEndpoint } from 'better-auth/api'
import type { BetterAuthPlugin } from 'better-auth'
import { genericOAuth } from 'better-auth/plugins/generic-oauth'
import type { AuthCoreConfig } from '../../../shared/config.ts'

/*
 * Sign-in with GitHub, Google and any OpenID Connect provider, each only when configured
 * (docs/social-sign-in.md). The redirects and callbacks are better-auth's, under its base URL
 * `PUBLIC_URL/auth`, so the provider sends the reader back through the gateway:
 * `/auth/callback/<id>` (`github`, `google`, `OIDC_PROVIDER_ID`). The OIDC provider is one of
 * better-auth's social providers to the client (`POST /auth/sign-in/social` `{ provider: id }`); its
 * discovery document is read at startup and again at the next sign-in when it could not be.
 */

/** A way to sign in besides the password, as `GET /auth/providers` lists it. */
export interface SignInProvider {
  id: string
  /** `social`: GitHub or Google; `oidc`: the OpenID Connect provider. Either signs in with `POST /auth/sign-in/social` `{ provider: id }`. */
  type: 'social' | 'oidc'
}

export function signInProviders (config: Pick<AuthCoreConfig, 'socialProviders' | 'oidc'>): SignInProvider[] {
  const providers: SignInProvider[] = Object.keys(config.socialProviders).sort().map((id) => ({ id, type: 'social' }))
  if (config.oidc !== undefined) providers.push({ id: config.oidc.providerId, type: 'oidc' })
  return providers
}

/** `GET /auth/providers`: which buttons a sign-in page shows; never a client id or secret. */
function providersEndpoint (providers: readonly SignInProvider[]) {
  return {
    id: 'sign-in-providers',
    endpoints: {
      listSignInProviders: createAuthEndpoint('/providers', { method: 'GET' }, async (ctx) => ctx.json({ providers }))
    }
  } satisfies BetterAuthPlugin
}

/** better-auth's options for the configured providers: its social providers, the generic OAuth plugin for OIDC, the list. */
export function signInProviderOptions (config: Pick<AuthCoreConfig, 'socialProviders' | 'oidc'>) {
  const { oidc } = config
  const plugins = [providersEndpoint(signInProviders(config))]
  return {
    socialProviders: { ...config.socialProviders },
    plugins: oidc === undefined
      ? plugins
      : [...plugins, genericOAuth({
          config: [{
            providerId: oidc.providerId,
            discoveryUrl: `${oidc.issuer}/.well-known/openid-configuration`,
            clientId: oidc.clientId,
            clientSecret: oidc.clientSecret,
            scopes: [...oidc.scopes],
            // State, PKCE and the ID token's nonce and signature, all checked.
            pkce: true,
            requireIdTokenVerification: true
          }]
        })]
  }
}
