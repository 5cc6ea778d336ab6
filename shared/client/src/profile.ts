/*
 * The profile shapes the browser client sends and receives (DESIGN §6). The gateway imports them too,
 * through `shared/profile.ts`, so the two sides cannot drift apart.
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
  /**
   * Consent was given under an older policy version than the current one (`CONSENT_VERSION`): the
   * fields are kept, but not sent to the docs' services until the reader consents again (a
   * `POST` with `consentGiven: true`).
   */
  reconsentRequired: boolean
}

/** What a caller may change; an absent field keeps its stored value; background fields need `consentGiven: true`. */
export type ProfileUpdate = Partial<Record<BackgroundField, string | null>> & { consentGiven?: boolean }
