/*
 * The profile API's shapes (DESIGN §6), shared by the gateway and the browser client: types only, so
 * the client bundle stays free of server code.
 */

export const BACKGROUND_FIELDS = ['softwareBackground', 'hardwareBackground', 'interestArea'] as const
export type BackgroundField = typeof BACKGROUND_FIELDS[number]

/** A profile as the API returns it: timestamps in ISO 8601, `null` when unset. */
export interface Profile {
  softwareBackground: string | null
  hardwareBackground: string | null
  interestArea: string | null
  consentGiven: boolean
  consentAt: string | null
  consentVersion: string | null
  createdAt: string | null
  updatedAt: string | null
}

/** What a caller may change; an absent field keeps its stored value; background fields need `consentGiven: true`. */
export type ProfileUpdate = Partial<Record<BackgroundField, string | null>> & { consentGiven?: boolean }

export type ConsentAction = 'grant' | 'withdraw'

export interface ConsentLogEntry {
  action: ConsentAction
  policyVersion: string
  at: string
}

/** `GET /api/v1/profile/export`: the data-subject access copy. */
export interface ProfileExport {
  profile: Profile
  consentLog: ConsentLogEntry[]
}
