import { Ajv } from 'ajv'
import type { FastifyInstance } from 'fastify'
import type { SchemaRecovery } from '../schema-recovery.ts'
import { verifyGatewayApiKey } from '../plugins/api-keys/index.ts'
import type { VerifiedApiKey } from '../plugins/api-keys/index.ts'
import { MAX_API_KEY_LENGTH } from '../../shared/api-keys.ts'

/** The same path as `gateway/route-paths.ts`'s `VERIFY_API_KEY_PATH` (auth-core never imports the gateway). */
export const VERIFY_API_KEY_PATH = '/api/verify-api-key'

export interface VerifyApiKeyOptions {
  /** better-auth's schema verdict, looked at again after a migration. */
  recovery: SchemaRecovery
}

export type VerifyApiKeyResponse = VerifiedApiKey | { user: null }

const BODY_SCHEMA = {
  type: 'object',
  required: ['key'],
  additionalProperties: false,
  properties: { key: { type: 'string', minLength: 1, maxLength: MAX_API_KEY_LENGTH } }
} as const

// Fastify's own Ajv coerces (`{ key: 12 }` would pass as "12"): the body is taken as sent.
const strictAjv = new Ajv({ removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: false })

/**
 * `POST /api/verify-api-key` on auth-core (internal, like validate-session; the gateway proxies only
 * `/auth/*` here): `{ key }` → the key's owner, as validate-session returns a user, and the key's id,
 * name, scope and expiry; `{ user: null }` for any key that does not open anything. The key is never
 * logged: it travels in the body, which no log line of either service holds.
 */
export default async function verifyApiKeyRoutes (app: FastifyInstance, options: VerifyApiKeyOptions): Promise<void> {
  if (options.recovery === undefined || options.recovery === null) throw new Error('verify-api-key: recovery is required')

  app.post<{ Body: { key: string } }>(VERIFY_API_KEY_PATH, {
    schema: { body: BODY_SCHEMA },
    validatorCompiler: ({ schema }) => strictAjv.compile(schema)
  }, async (request, reply): Promise<VerifyApiKeyResponse> => {
    reply.header('cache-control', 'no-store')
    const context = await app.auth.$context
    const verified = await options.recovery.run(async () => verifyGatewayApiKey(context, request.body.key))
    return verified ?? { user: null }
  })
}
