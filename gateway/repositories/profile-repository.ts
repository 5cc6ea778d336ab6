import { inTransaction } from '../../shared/db.ts'
import type { Pool, PoolClient } from '../../shared/db.ts'
import type { TokenClaims } from '../../shared/jwt.ts'
import { BACKGROUND_FIELDS } from '../../shared/profile.ts'
import type { BackgroundField, ConsentAction, Profile, ProfileExport, ProfileUpdate } from '../../shared/profile.ts'
import { ConsentRequiredError } from '../errors.ts'

export { BACKGROUND_FIELDS }
export type { ConsentAction, Profile, ProfileExport, ProfileUpdate } from '../../shared/profile.ts'

/** The `varchar` length of each background column (migration 0001-profiles-and-consent-log). */
export const BACKGROUND_MAX_LENGTH = 100

export interface UpsertResult {
  profile: Profile
  /** The consent change this write recorded in the log, if any. */
  consentChange: ConsentAction | null
}

export interface DeleteResult {
  deleted: boolean
  /** Consent had been given, so a `withdraw` entry was logged. */
  withdrew: boolean
}

export const EMPTY_PROFILE: Readonly<Profile> = Object.freeze({
  softwareBackground: null,
  hardwareBackground: null,
  interestArea: null,
  consentGiven: false,
  consentAt: null,
  consentVersion: null,
  createdAt: null,
  updatedAt: null,
  reconsentRequired: false
})

interface ProfileRow {
  software_background: string | null
  hardware_background: string | null
  interest_area: string | null
  consent_given: boolean
  consent_at: Date | null
  consent_version: string | null
  created_at: Date
  updated_at: Date
}

const PROFILE_COLUMNS = 'software_background, hardware_background, interest_area, consent_given, consent_at, consent_version, created_at, updated_at'

function toProfile (row: ProfileRow, currentVersion: string): Profile {
  return {
    softwareBackground: row.software_background,
    hardwareBackground: row.hardware_background,
    interestArea: row.interest_area,
    consentGiven: row.consent_given,
    consentAt: row.consent_at?.toISOString() ?? null,
    consentVersion: row.consent_version,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
    reconsentRequired: row.consent_given && row.consent_version !== currentVersion
  }
}

/** Trims strings and turns empty ones into `null`; absent fields stay absent. */
export function normaliseUpdate (update: ProfileUpdate): ProfileUpdate {
  const normalised: ProfileUpdate = {}
  for (const field of BACKGROUND_FIELDS) {
    const value = update[field]
    if (value === undefined) continue
    const trimmed = value === null ? '' : value.trim()
    normalised[field] = trimmed === '' ? null : trimmed
  }
  if (update.consentGiven !== undefined) normalised.consentGiven = update.consentGiven
  return normalised
}

/** Background information is stored only in a request that gives consent. */
export function violatesConsent (update: ProfileUpdate): boolean {
  return update.consentGiven !== true && BACKGROUND_FIELDS.some((field) => {
    const value = update[field]
    return value !== undefined && value !== null
  })
}

async function logConsent (client: PoolClient, userId: string, action: ConsentAction, policyVersion: string): Promise<void> {
  await client.query('INSERT INTO consent_log (user_id, action, policy_version) VALUES ($1, $2, $3)', [userId, action, policyVersion])
}

export interface ProfileRepository {
  get: (userId: string) => Promise<Profile>
  /**
   * Creates or updates the profile under the consent rules, in one transaction: throws
   * `ConsentRequiredError` (nothing written) when background values come without consent; a grant
   * stamps `consentAt`/`consentVersion` and is logged; a withdrawal erases the background and is logged.
   */
  upsert: (userId: string, update: ProfileUpdate, consentVersion: string) => Promise<UpsertResult>
  delete: (userId: string) => Promise<DeleteResult>
  export: (userId: string) => Promise<ProfileExport>
  /** The profile claims for upstream identity tokens: empty unless consent is given. */
  consentedClaims: (userId: string) => Promise<TokenClaims>
}

/** Profiles on Postgres; `consentVersion` is the current policy version (`CONSENT_VERSION`). */
export function createProfileRepository (pool: Pool, consentVersion: string): ProfileRepository {
  async function read (db: Pool | PoolClient, userId: string): Promise<Profile> {
    const { rows } = await db.query<ProfileRow>(`SELECT ${PROFILE_COLUMNS} FROM profile WHERE user_id = $1`, [userId])
    return rows.length === 0 ? { ...EMPTY_PROFILE } : toProfile(rows[0], consentVersion)
  }

  return {
    async get (userId) {
      return read(pool, userId)
    },

    async upsert (userId, rawUpdate, grantedVersion) {
      const update = normaliseUpdate(rawUpdate)
      if (violatesConsent(update)) throw new ConsentRequiredError()
      return inTransaction(pool, 'BEGIN', async (client) => {
        // The insert makes the row exist so that it can be locked: concurrent writers for one user
        // queue on the lock and each applies its whole update to the latest state.
        await client.query('INSERT INTO profile (user_id) VALUES ($1) ON CONFLICT (user_id) DO NOTHING', [userId])
        const { rows: [current] } = await client.query<ProfileRow>(`SELECT ${PROFILE_COLUMNS} FROM profile WHERE user_id = $1 FOR UPDATE`, [userId])

        let consentChange: ConsentAction | null = null
        if (update.consentGiven === true && (!current.consent_given || current.consent_version !== grantedVersion)) consentChange = 'grant'
        if (update.consentGiven === false && current.consent_given) consentChange = 'withdraw'
        const erase = update.consentGiven === false
        const next = (field: BackgroundField, stored: string | null): string | null => erase ? null : update[field] === undefined ? stored : update[field] ?? null

        const { rows: [row] } = await client.query<ProfileRow>(
          `UPDATE profile SET
             software_background = $2,
             hardware_background = $3,
             interest_area = $4,
             consent_given = $5,
             consent_at = CASE WHEN $6::text = 'grant' THEN now() WHEN $5 THEN consent_at ELSE NULL END,
             consent_version = CASE WHEN $6::text = 'grant' THEN $7 WHEN $5 THEN consent_version ELSE NULL END,
             updated_at = now()
           WHERE user_id = $1
           RETURNING ${PROFILE_COLUMNS}`,
          [
            userId,
            next('softwareBackground', current.software_background),
            next('hardwareBackground', current.hardware_background),
            next('interestArea', current.interest_area),
            update.consentGiven ?? current.consent_given,
            consentChange,
            grantedVersion
          ]
        )
        if (consentChange === 'grant') await logConsent(client, userId, 'grant', grantedVersion)
        // A withdrawal is recorded against the policy version that was agreed to.
        if (consentChange === 'withdraw') await logConsent(client, userId, 'withdraw', current.consent_version ?? grantedVersion)
        return { profile: toProfile(row, consentVersion), consentChange }
      })
    },

    async delete (userId) {
      return inTransaction(pool, 'BEGIN', async (client) => {
        const { rows } = await client.query<Pick<ProfileRow, 'consent_given' | 'consent_version'>>(
          'DELETE FROM profile WHERE user_id = $1 RETURNING consent_given, consent_version',
          [userId]
        )
        if (rows.length === 0) return { deleted: false, withdrew: false }
        const [{ consent_given: given, consent_version: version }] = rows
        if (given) await logConsent(client, userId, 'withdraw', version ?? '')
        return { deleted: true, withdrew: given }
      })
    },

    async export (userId) {
      // One snapshot, so the profile and the log agree with each other.
      return inTransaction(pool, 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY', async (client) => {
        const profile = await read(client, userId)
        const { rows } = await client.query<{ action: ConsentAction, policy_version: string, created_at: Date }>(
          'SELECT action, policy_version, created_at FROM consent_log WHERE user_id = $1 ORDER BY id',
          [userId]
        )
        return { profile, consentLog: rows.map((row) => ({ action: row.action, policyVersion: row.policy_version, at: row.created_at.toISOString() })) }
      })
    },

    async consentedClaims (userId): Promise<TokenClaims> {
      // Consent under an older policy version is not consent to the current one.
      const { rows } = await pool.query<Pick<ProfileRow, 'software_background' | 'hardware_background' | 'interest_area' | 'consent_version'>>(
        'SELECT software_background, hardware_background, interest_area, consent_version FROM profile WHERE user_id = $1 AND consent_given AND consent_version = $2',
        [userId, consentVersion]
      )
      if (rows.length === 0) return {}
      const [row] = rows
      return {
        softwareBackground: row.software_background,
        hardwareBackground: row.hardware_background,
        interestArea: row.interest_area,
        consentVersion: row.consent_version
      }
    }
  }
}
