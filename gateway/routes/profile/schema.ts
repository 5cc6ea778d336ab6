import { Ajv } from 'ajv'
import type { FastifySchemaValidationError } from 'fastify'
import { BACKGROUND_MAX_LENGTH } from '../../repositories/profile-repository.ts'

const backgroundSchema = {
  type: ['string', 'null'],
  maxLength: BACKGROUND_MAX_LENGTH,
  // Postgres text cannot hold NUL: refused here rather than failing in the database.
  pattern: '^[^\\u0000]*$'
} as const

export const PROFILE_BODY_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    softwareBackground: backgroundSchema,
    hardwareBackground: backgroundSchema,
    interestArea: backgroundSchema,
    consentGiven: { type: 'boolean' }
  }
} as const

const nullableString = { type: ['string', 'null'] } as const
const nullableTime = { type: ['string', 'null'], format: 'date-time' } as const

/** The profile as every profile route answers it (`Profile`, shared/profile.ts): exactly these fields. */
export const PROFILE_RESPONSE_SCHEMA = {
  description: 'The caller\'s profile (every field `null` and `consentGiven: false` when there is none)',
  type: 'object',
  required: ['softwareBackground', 'hardwareBackground', 'interestArea', 'consentGiven', 'consentAt', 'consentVersion', 'createdAt', 'updatedAt', 'reconsentRequired'],
  properties: {
    softwareBackground: nullableString,
    hardwareBackground: nullableString,
    interestArea: nullableString,
    consentGiven: { type: 'boolean' },
    consentAt: nullableTime,
    consentVersion: nullableString,
    createdAt: nullableTime,
    updatedAt: nullableTime,
    reconsentRequired: { type: 'boolean', description: 'Consent was given to an older `CONSENT_VERSION`: ask again' }
  }
} as const

// Fastify's shared ajv silently drops unknown properties and coerces `5` into `"5"`; the profile
// body is validated strictly, so both are refused with 400.
export const strictAjv = new Ajv({ removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: false, allowUnionTypes: true })

export function formatValidationErrors (errors: FastifySchemaValidationError[], dataVar: string): Error {
  const [first] = errors
  const where = `${dataVar}${first.instancePath}`
  if (first.keyword === 'additionalProperties') return new Error(`${where} has an unknown field '${String(first.params.additionalProperty)}'`)
  if (first.keyword === 'pattern') return new Error(`${where} must not contain NUL characters`)
  return new Error(`${where} ${first.message ?? 'is invalid'}`)
}
