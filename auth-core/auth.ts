import { betterAuth } from 'better-auth'
import type { BetterAuthOptions } from 'better-auth'
import type { FastifyBaseLogger } from 'fastify'
import type { AuthCoreConfig, UserField } from '../shared/config.ts'
import type { Pool } from '../shared/db.ts'
import { admin, twoFactor } from 'better-auth/plugins'
import { tokenRevocation } from './plugins/token-revocation/index.ts'
import { adminPolicy } from './plugins/admin-policy/index.ts'
import { totpReplay } from './plugins/totp-replay/index.ts'
import { apiKeyPolicy, apiKeys } from './plugins/api-keys/index.ts'
import { signInProviderOptions } from './plugins/sign-in-providers/index.ts'
import type { RedisSessionStorage } from './session-storage.ts'
import { existingAccountMail, resetPasswordMail, verificationMail } from './mail.ts'
import type { Mailer } from './mail.ts'
import { accountErasure } from './account-erasure.ts'

export const SESSION_EXPIRES_IN_SECONDS = 60 * 60 * 24 * 7
export const SESSION_UPDATE_AGE_SECONDS = 60 * 60 * 24
export const MIN_PASSWORD_LENGTH = 8
export const MAX_PASSWORD_LENGTH = 128
export const VERIFICATION_EXPIRES_IN_SECONDS = 60 * 60
export const RESET_PASSWORD_EXPIRES_IN_SECONDS = 30 * 60
const APP_NAME = 'auth-gateway'

/** What better-auth is given besides the configuration: where it logs, caches sessions and sends mail. */
export interface AuthServices {
  log?: FastifyBaseLogger
  /** Redis in front of Postgres for sessions (`REDIS_URL`). */
  storage?: RedisSessionStorage
  /** Verification and password-reset mail; without it no mail is sent (migrations, tools). */
  mailer?: Mailer
}

type AdditionalFields = NonNullable<NonNullable<BetterAuthOptions['user']>['additionalFields']>

/** `AUTH_USER_FIELDS` as better-auth additional fields; `input: false` is what makes a field readonly. */
export function toAdditionalFields (fields: readonly UserField[]): AdditionalFields {
  const result: AdditionalFields = {}
  for (const field of fields) {
    result[field.name] = { type: field.type, required: false, input: !field.readonly }
  }
  return result
}

/**
 * `COOKIE_SAME_SITE=none`: a docs site on another site than the gateway only gets its session cookie
 * back on credentialed fetches with `SameSite=None; Secure`, partitioned (CHIPS) so browsers that
 * phase out third-party cookies still keep it for that site.
 */
function crossSiteCookies (config: Readonly<AuthCoreConfig>) {
  if (config.cookieSameSite === 'lax') return {}
  return {
    useSecureCookies: config.cookieSameSite === 'none' ? true : undefined,
    defaultCookieAttributes: config.cookieSameSite === 'none'
      ? { sameSite: 'none' as const, secure: true, partitioned: true }
      : { sameSite: 'strict' as const }
  }
}

/** better-auth's own log lines, into pino (object first; its extra arguments only when they are errors). */
function toPino (log: FastifyBaseLogger | undefined) {
  if (log === undefined) return { level: 'error' as const }
  return {
    level: 'warn' as const,
    log (level: 'debug' | 'info' | 'warn' | 'error', message: string, ...args: unknown[]) {
      const err = args.find((arg) => arg instanceof Error)
      log[level]({ source: 'better-auth', ...(err === undefined ? {} : { err }) }, message)
    }
  }
}

/**
 * With Redis (`REDIS_URL`), sessions and verification values are cached there and kept in Postgres
 * too, so get-session is a Redis read and Postgres stays the record (see `session-storage.ts`).
 */
function sharedStorage (storage: RedisSessionStorage | undefined) {
  if (storage === undefined) return {}
  return { secondaryStorage: storage, verification: { storeInDatabase: true } }
}

/**
 * The whole better-auth configuration. Public links are built from `PUBLIC_URL/auth`, the path the
 * browser sees through the gateway; the auth-core host maps its internal `/api/auth/*` onto it.
 */
/**
 * Verification at sign-up, password reset, and a notice to the owner when someone signs up with an
 * address that has an account. Mails are queued (the answer never waits for them), so an answer
 * says nothing about whether an account exists.
 */
function accountMail (config: Readonly<AuthCoreConfig>, mailer: Mailer | undefined) {
  if (mailer === undefined) return { emailAndPassword: {}, emailVerification: {} }
  const signInPage = config.allowedOrigins[0] ?? config.publicUrl
  return {
    emailAndPassword: {
      requireEmailVerification: config.requireEmailVerification,
      resetPasswordTokenExpiresIn: RESET_PASSWORD_EXPIRES_IN_SECONDS,
      async sendResetPassword ({ user, url }: { user: { email: string }, url: string }) { mailer.send(resetPasswordMail(APP_NAME, user.email, url)) },
      async onExistingUserSignUp ({ user }: { user: { email: string } }) { mailer.send(existingAccountMail(APP_NAME, user.email, signInPage)) }
    },
    emailVerification: {
      sendOnSignUp: true,
      autoSignInAfterVerification: true,
      expiresIn: VERIFICATION_EXPIRES_IN_SECONDS,
      async sendVerificationEmail ({ user, url }: { user: { email: string }, url: string }) { mailer.send(verificationMail(APP_NAME, user.email, url)) }
    }
  }
}

export function createAuthOptions (config: Readonly<AuthCoreConfig>, pool: Pool, { log, storage, mailer }: AuthServices = {}) {
  const mail = accountMail(config, mailer)
  const providers = signInProviderOptions(config, pool)
  return {
    appName: 'auth-gateway',
    database: pool,
    secret: config.betterAuthSecret,
    baseURL: `${config.publicUrl}/auth`,
    trustedOrigins: [...config.allowedOrigins],
    emailAndPassword: {
      enabled: true,
      minPasswordLength: MIN_PASSWORD_LENGTH,
      maxPasswordLength: MAX_PASSWORD_LENGTH,
      autoSignIn: true,
      // Whoever reset the password may be the only one who should still be signed in.
      revokeSessionsOnPasswordReset: true,
      ...mail.emailAndPassword
    },
    emailVerification: mail.emailVerification,
    // GitHub, Google, an OpenID Connect provider: each only when configured.
    socialProviders: providers.socialProviders,
    account: {
      // A provider's sign-in joins an existing account of its address only when both sides verified
      // it (the provider's `email_verified`, or being in TRUSTED_PROVIDERS; the account's own).
      accountLinking: { enabled: true, requireLocalEmailVerified: true, trustedProviders: [...config.trustedProviders] }
    },
    session: {
      expiresIn: SESSION_EXPIRES_IN_SECONDS,
      updateAge: SESSION_UPDATE_AGE_SECONDS,
      // With secondaryStorage: in Postgres as well, read from there when Redis misses or is away.
      storeSessionInDatabase: true
    },
    ...sharedStorage(storage),
    user: {
      additionalFields: toAdditionalFields(config.userFields),
      deleteUser: { enabled: true, ...accountErasure(pool) },
      // A new address is used once its owner clicked the link mailed to it.
      changeEmail: { enabled: mailer !== undefined }
    },
    advanced: {
      // The gateway replaces any client-sent X-Forwarded-For with the one address it resolved.
      ipAddress: { ipAddressHeaders: ['x-forwarded-for'] },
      ...crossSiteCookies(config)
    },
    // The gateway owns rate limiting (per normalised route group, shared across replicas).
    rateLimit: { enabled: false },
    telemetry: { enabled: false },
    plugins: [
      // Roles (`user` by default, `admin`), bans, user administration under `/auth/admin/*`.
      admin({ defaultRole: 'user', adminRoles: ['admin'] }),
      // TOTP with backup codes; the gateway's sign-in budget covers `/auth/two-factor/*`.
      twoFactor({ issuer: APP_NAME }),
      totpReplay(),
      adminPolicy({ pool, require2fa: config.adminRequire2fa, impersonation: config.adminImpersonation }),
      tokenRevocation({ pool }),
      // Named, scoped, expiring keys for scripts (`/auth/api-key/*`); verified on the internal port.
      apiKeys(),
      apiKeyPolicy(),
      ...providers.plugins
    ],
    logger: toPino(log)
  } satisfies BetterAuthOptions
}

export function createAuth (config: Readonly<AuthCoreConfig>, pool: Pool, services: AuthServices = {}) {
  return betterAuth(createAuthOptions(config, pool, services))
}

export type Auth = ReturnType<typeof createAuth>
