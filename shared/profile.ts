/*
 * The profile API's shapes (DESIGN §6). What the browser client needs lives in its package
 * (`shared/client/src/profile.ts`) and is re-exported here, so the gateway imports every shape from
 * one place and the client package carries no server code.
 */
import type { Profile } from './client/src/profile.ts'

export { BACKGROUND_FIELDS } from './client/src/profile.ts'
export type { BackgroundField, Profile, ProfileUpdate } from './client/src/profile.ts'

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
