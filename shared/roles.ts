/** One role name, as the admin plugin keeps them in `user.role` (several joined by commas). */
export const ROLE_NAME = /^[a-z][a-z0-9_-]{0,31}$/

/** A `user.role` value: one or more role names, separated by commas. */
export const ROLE = /^[a-z][a-z0-9_-]{0,31}(?:,[a-z][a-z0-9_-]{0,31})*$/
