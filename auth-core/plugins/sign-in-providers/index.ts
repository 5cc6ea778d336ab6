import { createAuthEndpoint, createAuthMiddleware, isAPIError } from 'better-auth/api'
import type { BetterAuthPlugin } from 'better-auth'
import { genericOAuth } from 'better-auth/plugins/generic-oauth'
import type { GenericOAuthUserInfo } from 'better-auth/plugins/generic-oauth'
import { defineRequestState } from '@better-auth/core/context'
import type { AuthCoreConfig, OidcProviderConfig } from '../../../shared/config.ts'
import type { Pool } from '../../../shared/db.ts'
import { ROLE_NAME } from '../../../shared/roles.ts'
import { REVOKED_USER_HEADER, revokeTokensNow } from '../../../shared/token-revocation.ts'

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
      listSignInProviders: createAuthEndpoint('/providers', {
        method: 'GET',
        metadata: {
          openapi: {
            description: 'The ways to sign in besides the password, each only when configured: `{ providers: [{ id, type }] }`, `type` `social` (GitHub, Google) or `oidc`; sign in with `POST /auth/sign-in/social` `{ provider: id }` (docs/social-sign-in.md)',
            responses: {
              200: {
                description: 'The configured providers',
                content: { 'application/json': { schema: { type: 'object', required: ['providers'], properties: { providers: { type: 'array', items: { type: 'object', required: ['id', 'type'], properties: { id: { type: 'string' }, type: { type: 'string', enum: ['social', 'oidc'] } } } } } } } }
              }
            }
          }
        }
      }, async (ctx) => ctx.json({ providers }))
    }
  } satisfies BetterAuthPlugin
}

/**
 * Whether a provider may vouch for an address: printable ASCII only. better-auth finds an account by
 * the lower-cased address, and lower-casing maps some other characters onto ASCII ones (the Kelvin
 * sign U+212A onto `k`), so a look-alike address would sign in to someone else's account.
 */
export function vouchable (email: unknown): boolean {
  return typeof email === 'string' && /^[\u0021-\u007e]+$/.test(email)
}

/**
 * The OIDC profile's verdict on its address, from `email_verified` alone (a boolean, or the string
 * `"true"` as some providers send it): better-auth spreads the ID token's claims over its own
 * reading, so a claim named `emailVerified` would otherwise decide.
 */
export function verifiedByProvider (profile: Record<string, unknown>): boolean {
  const claim = profile.email_verified
  return vouchable(profile.email) && (claim === true || claim === 'true')
}

/** For GitHub and Google: their own reading of the address stands, unless the address is not one to vouch for. */
function socialMapping (profile: { email?: unknown }): { emailVerified?: false } {
  return vouchable(profile.email) ? {} : { emailVerified: false }
}

/** The role a provider's claim names: its role names (a list, or comma-separated), `user` when none is valid. */
export function roleFromClaim (claim: unknown): string {
  const names = Array.isArray(claim) ? claim : typeof claim === 'string' ? claim.split(',') : []
  const roles = [...new Set(names.filter((name): name is string => typeof name === 'string').map((name) => name.trim().toLowerCase()).filter((name) => ROLE_NAME.test(name)))]
  return roles.length === 0 ? 'user' : roles.join(',')
}

// What the provider's claim said, from `mapProfileToUser` to the callback's after hook, per request.
const claimedRole = defineRequestState<string | null>(() => null)

/**
 * `OIDC_ROLE_CLAIM`: the provider decides the role at each sign-in with it. better-auth never lets
 * a provider write `role` (a server-only field), so the claim is read while the profile is mapped
 * and written once the callback made its session; a changed role refuses the user's older bearer
 * tokens (they carry the role), as `admin/set-role` does, and the gateway forgets its cached
 * sessions of the user.
 */
function providerRoles (oidc: OidcProviderConfig, pool: Pool) {
  return {
    id: 'provider-roles',
    hooks: {
      after: [{
        matcher: (ctx: { path?: string, params?: unknown }) => ctx.path === '/callback/:id' && (ctx.params as { id?: unknown } | undefined)?.id === oidc.providerId,
        handler: createAuthMiddleware(async (ctx) => {
          const role = await claimedRole.get()
          const session = ctx.context.newSession
          if (role === null || session === null || session === undefined) return
          const returned = ctx.context.returned
          // The callback answers with a redirect; any other error made no session worth a role.
          if (isAPIError(returned) && returned.statusCode !== 302) return
          const { user } = session as { user: { id: string, role?: string | null } }
          if (user.role === role) return
          await ctx.context.internalAdapter.updateUser(user.id, { role })
          await revokeTokensNow(pool, user.id)
          ctx.setHeader(REVOKED_USER_HEADER, user.id)
        })
      }]
    }
  } satisfies BetterAuthPlugin
}

/** better-auth's options for the configured providers: its social providers, the generic OAuth plugin for OIDC, the list. */
export function signInProviderOptions (config: Pick<AuthCoreConfig, 'socialProviders' | 'oidc' | 'userFields'>, pool: Pool) {
  const { oidc } = config
  const plugins = [providersEndpoint(signInProviders(config))]
  const roleClaim = oidc?.roleClaim
  const writable = config.userFields.filter((field) => !field.readonly)
  /** The claims of the OIDC provider's profile that set the user: writable custom fields of the same name and type; the role claim, kept for the callback. */
  async function mapProfileToUser (profile: GenericOAuthUserInfo): Promise<Record<string, unknown>> {
    if (roleClaim !== undefined) await claimedRole.set(roleFromClaim(profile[roleClaim]))
    // Spread last by better-auth: the verdict is `email_verified`'s, whatever other claims say.
    const fields: Record<string, unknown> = { emailVerified: verifiedByProvider(profile) }
    for (const field of writable) {
      const value = profile[field.name]
      if (typeof value === field.type) fields[field.name] = value
    }
    return fields
  }
  return {
    socialProviders: Object.fromEntries(Object.entries(config.socialProviders).map(([id, client]) => [id, { ...client, mapProfileToUser: socialMapping }])),
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
            requireIdTokenVerification: true,
            mapProfileToUser
          }]
        }), ...(roleClaim === undefined ? [] : [providerRoles(oidc, pool)])]
  }
}
