import type { FastifyInstance, FastifyRequest } from 'fastify'
import { isSameSiteWrite, writeOrigins } from '../../guards/csrf.ts'
import { CsrfRejectedError, UnauthorizedError } from '../../errors.ts'
import { callerOf } from '../../identity/identity-resolver.ts'
import { createProfileRepository } from '../../repositories/profile-repository.ts'
import type { ProfileUpdate } from '../../repositories/profile-repository.ts'
import { ConsentedClaims } from './consented-claims.ts'
import { formatValidationErrors, PROFILE_BODY_SCHEMA, PROFILE_RESPONSE_SCHEMA, strictAjv } from './schema.ts'

export const PROFILE_PATH = '/api/v1/profile'
export const PROFILE_EXPORT_PATH = '/api/v1/profile/export'
/** @default 16 KiB, the gateway's body limit, restated so the profile API keeps it. */
export const PROFILE_BODY_LIMIT = 16 * 1024
export const EXPORT_FILENAME = 'profile-export.json'

export interface ProfileRoutesOptions {
  /** The consent policy version recorded with each grant (`CONSENT_VERSION`). */
  consentVersion: string
  /** Origins allowed to make cookie-authenticated writes (`ALLOWED_ORIGINS`). */
  allowedOrigins: readonly string[]
  /** The gateway's own origin is allowed too (`PUBLIC_URL`). */
  publicUrl: string
  /** How long consented claims are reused by this replica, in ms (`SESSION_CACHE_TTL`). @default 5000 */
  claimsCacheTtl?: number
}

function validateOptions (options: ProfileRoutesOptions): Set<string> {
  if (typeof options.consentVersion !== 'string' || options.consentVersion === '') throw new Error('profile routes: consentVersion must be a non-empty string')
  return writeOrigins(options.allowedOrigins, options.publicUrl)
}

/** The caller's profile and consent, on Postgres. */
export default async function profileRoutes (app: FastifyInstance, options: ProfileRoutesOptions): Promise<void> {
  const allowedOrigins = validateOptions(options)
  const profiles = createProfileRepository(app.pg, options.consentVersion)
  const claims = new ConsentedClaims(profiles, options.claimsCacheTtl ?? 5000, app.identities, app.log)
  app.identityClaimProviders.push(claims.provider)

  // Only JSON bodies here: a `text/plain` POST is what a cross-site form can send without a preflight.
  app.removeContentTypeParser('text/plain')

  app.addHook('onSend', async function noStore (_request, reply) {
    reply.header('cache-control', 'no-store')
  })

  // After parsing (so a text/plain body is a 415) and before validation and any write.
  const checkOrigin = async (request: FastifyRequest): Promise<void> => {
    const identity = callerOf(request)
    if (!isSameSiteWrite(request, identity, allowedOrigins)) {
      request.log.info({ event: 'csrf_rejected', userId: identity.userId, origin: request.headers.origin ?? null }, 'cross-site write refused')
      throw new CsrfRejectedError()
    }
  }

  const tags = ['Profile']
  app.get(PROFILE_PATH, {
    schema: { summary: 'The caller\'s profile', tags, response: { 200: PROFILE_RESPONSE_SCHEMA } }
  }, async (request) => profiles.get(callerOf(request).userId))

  app.post<{ Body: ProfileUpdate }>(PROFILE_PATH, {
    bodyLimit: PROFILE_BODY_LIMIT,
    schema: {
      summary: 'Create or update the caller\'s profile',
      description: 'Background fields need `consentGiven: true` (else 400 `consent_required`, nothing written); `consentGiven: false` withdraws consent and erases them. Unknown fields are refused (docs/profiles.md).',
      tags,
      body: PROFILE_BODY_SCHEMA,
      response: { 200: PROFILE_RESPONSE_SCHEMA }
    },
    validatorCompiler: ({ schema }) => strictAjv.compile(schema),
    schemaErrorFormatter: formatValidationErrors,
    preValidation: checkOrigin
  }, async (request) => {
    const { userId } = callerOf(request)
    let result
    try {
      result = await claims.writing(userId, async () => profiles.upsert(userId, request.body, options.consentVersion))
    } catch (err) {
      // The user was deleted while this session was still cached: the profile's foreign key refuses it.
      if ((err as { code?: unknown }).code === '23503') throw new UnauthorizedError()
      throw err
    }
    if (result.consentChange === 'grant') request.log.info({ event: 'consent_grant', userId, consentVersion: options.consentVersion }, 'consent granted')
    if (result.consentChange === 'withdraw') request.log.info({ event: 'consent_withdraw', userId }, 'consent withdrawn')
    return result.profile
  })

  app.delete(PROFILE_PATH, {
    schema: { summary: 'Erase the caller\'s profile (consent withdrawn, logged)', tags, response: { 204: { description: 'Erased (or there was none)', type: 'null' } } },
    preValidation: checkOrigin
  }, async (request, reply) => {
    const { userId } = callerOf(request)
    const { deleted, withdrew } = await claims.writing(userId, async () => profiles.delete(userId))
    if (withdrew) request.log.info({ event: 'consent_withdraw', userId }, 'consent withdrawn')
    if (deleted) request.log.info({ event: 'profile_delete', userId }, 'profile erased')
    return reply.code(204).send()
  })

  app.get(PROFILE_EXPORT_PATH, {
    schema: { summary: 'The caller\'s profile and consent log, as an attachment (data-subject access)', tags }
  }, async (request, reply) => {
    const { userId } = callerOf(request)
    const data = await profiles.export(userId)
    request.log.info({ event: 'profile_export', userId }, 'profile exported')
    return reply.header('content-disposition', `attachment; filename="${EXPORT_FILENAME}"`).send(data)
  })
}
