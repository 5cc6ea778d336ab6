import { createCipheriv, createDecipheriv, hkdfSync, randomBytes, randomUUID } from 'node:crypto'
import { exportJWK, generateKeyPair, importJWK } from 'jose'
import type { CryptoKey, JWK } from 'jose'
import type { Pool } from './db.ts'

/*
 * Ed25519 keys the gateway signs with, stored in Postgres (table `signing_key`) so every replica
 * signs with the same keys and publishes the same JWKS. Private keys are sealed with AES-256-GCM
 * under a key derived from `JWT_SECRET`: a copy of the database alone cannot sign.
 *
 * Two purposes, never mixed: `identity` keys sign the tokens upstreams receive (audience-bound);
 * `client` keys sign `GET /auth/jwt` tokens when `JWT_ALG=EdDSA`. The gateway accepts a bearer token
 * only under a client key, so an identity token an upstream holds is never a way in.
 */

export const SIGNING_ALGORITHM = 'EdDSA'
export type KeyPurpose = 'identity' | 'client'
/** How long a rotated-out identity key stays published: longer than any identity token lives. @default 1 hour */
export const DEFAULT_IDENTITY_KEY_OVERLAP_MS = 60 * 60 * 1000
/** A rotated-out client key stays published as long as a client token can live (7 days) and a day more. */
export const CLIENT_KEY_OVERLAP_MS = 8 * 24 * 60 * 60 * 1000
// Any constant: replicas starting together take turns creating the first key.
const KEY_LOCK = 7_243_102
const SEAL_INFO = 'auth-gateway signing-key seal v1'

export interface PublicJwk extends JWK {
  kid: string
  alg: typeof SIGNING_ALGORITHM
  use: 'sig'
}

export interface SigningKey {
  kid: string
  purpose: KeyPurpose
  createdAt: Date
  /** After this time the key is no longer published; null while it is in service. */
  retiresAt: Date | null
  publicJwk: PublicJwk
  /** Null when the row was sealed under another `JWT_SECRET` (published, never used to sign). */
  privateKey: CryptoKey | null
  publicKey: CryptoKey
}

interface KeyRow {
  kid: string
  purpose: KeyPurpose
  public_jwk: PublicJwk
  sealed_private_jwk: string
  created_at: Date
  retires_at: Date | null
}

function sealKey (jwtSecret: string): Buffer {
  return Buffer.from(hkdfSync('sha256', jwtSecret, 'auth-gateway', SEAL_INFO, 32))
}

function seal (secret: string, jwk: JWK): string {
  const iv = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', sealKey(secret), iv)
  const sealed = Buffer.concat([cipher.update(JSON.stringify(jwk), 'utf8'), cipher.final()])
  return [iv, cipher.getAuthTag(), sealed].map((part) => part.toString('base64url')).join('.')
}

function unseal (secret: string, text: string): JWK | null {
  const [iv, tag, sealed] = text.split('.').map((part) => Buffer.from(part, 'base64url'))
  try {
    const decipher = createDecipheriv('aes-256-gcm', sealKey(secret), iv)
    decipher.setAuthTag(tag)
    return JSON.parse(Buffer.concat([decipher.update(sealed), decipher.final()]).toString('utf8')) as JWK
  } catch {
    return null
  }
}

async function newKeyRow (secret: string, purpose: KeyPurpose): Promise<Omit<KeyRow, 'created_at' | 'retires_at'>> {
  const { publicKey, privateKey } = await generateKeyPair(SIGNING_ALGORITHM, { crv: 'Ed25519', extractable: true })
  const kid = randomUUID()
  const publicJwk: PublicJwk = { ...await exportJWK(publicKey), kid, alg: SIGNING_ALGORITHM, use: 'sig' }
  return { kid, purpose, public_jwk: publicJwk, sealed_private_jwk: seal(secret, await exportJWK(privateKey)) }
}

async function insertKey (db: Pool, secret: string, purpose: KeyPurpose): Promise<string> {
  const row = await newKeyRow(secret, purpose)
  await db.query('INSERT INTO signing_key (kid, purpose, public_jwk, sealed_private_jwk) VALUES ($1, $2, $3, $4)', [row.kid, row.purpose, JSON.stringify(row.public_jwk), row.sealed_private_jwk])
  return row.kid
}

async function toKey (secret: string, row: KeyRow): Promise<SigningKey> {
  const privateJwk = unseal(secret, row.sealed_private_jwk)
  return {
    kid: row.kid,
    purpose: row.purpose,
    createdAt: row.created_at,
    retiresAt: row.retires_at,
    publicJwk: row.public_jwk,
    privateKey: privateJwk === null ? null : await importJWK(privateJwk, SIGNING_ALGORITHM) as CryptoKey,
    publicKey: await importJWK(row.public_jwk, SIGNING_ALGORITHM) as CryptoKey
  }
}

/** Every key still published (in service or inside its overlap window), newest first. */
export async function readSigningKeys (db: Pool, secret: string): Promise<SigningKey[]> {
  const { rows } = await db.query<KeyRow>(
    `SELECT kid, purpose, public_jwk, sealed_private_jwk, created_at, retires_at FROM signing_key
     WHERE retires_at IS NULL OR retires_at > now() ORDER BY created_at DESC, kid`
  )
  return Promise.all(rows.map(async (row) => toKey(secret, row)))
}

/**
 * Creates a key for each purpose that has none this `JWT_SECRET` can sign with; run at startup.
 * Under a transaction-level advisory lock, so replicas starting at once create one key, not several.
 */
export async function ensureSigningKeys (db: Pool, secret: string, purposes: readonly KeyPurpose[]): Promise<void> {
  const client = await db.connect()
  try {
    await client.query('BEGIN')
    try {
      await client.query('SELECT pg_advisory_xact_lock($1)', [KEY_LOCK])
      const { rows } = await client.query<Pick<KeyRow, 'purpose' | 'sealed_private_jwk'>>('SELECT purpose, sealed_private_jwk FROM signing_key WHERE retires_at IS NULL')
      for (const purpose of purposes) {
        if (rows.some((row) => row.purpose === purpose && unseal(secret, row.sealed_private_jwk) !== null)) continue
        const row = await newKeyRow(secret, purpose)
        await client.query('INSERT INTO signing_key (kid, purpose, public_jwk, sealed_private_jwk) VALUES ($1, $2, $3, $4)', [row.kid, row.purpose, JSON.stringify(row.public_jwk), row.sealed_private_jwk])
      }
      await client.query('COMMIT')
    } catch (err) {
      await client.query('ROLLBACK')
      throw err
    }
  } finally {
    client.release()
  }
}

export interface RotationReport {
  created: Array<{ kid: string, purpose: KeyPurpose }>
  retiring: Array<{ kid: string, purpose: KeyPurpose, retiresAt: Date }>
  deleted: number
}

/**
 * `npm run keys -- rotate`: a new key for each purpose in service; the keys it replaces stay published
 * for the overlap window (tokens they signed keep verifying), then are no longer published and are
 * deleted by a later rotation.
 */
export async function rotateSigningKeys (db: Pool, secret: string, identityOverlapMs: number = DEFAULT_IDENTITY_KEY_OVERLAP_MS): Promise<RotationReport> {
  const report: RotationReport = { created: [], retiring: [], deleted: 0 }
  const deleted = await db.query('DELETE FROM signing_key WHERE retires_at IS NOT NULL AND retires_at <= now()')
  report.deleted = deleted.rowCount ?? 0
  const { rows } = await db.query<Pick<KeyRow, 'kid' | 'purpose'>>('SELECT kid, purpose FROM signing_key WHERE retires_at IS NULL')
  const purposes = new Set<KeyPurpose>(rows.map((row) => row.purpose))
  if (purposes.size === 0) purposes.add('identity')
  for (const purpose of purposes) report.created.push({ kid: await insertKey(db, secret, purpose), purpose })
  for (const row of rows) {
    const overlap = row.purpose === 'client' ? CLIENT_KEY_OVERLAP_MS : identityOverlapMs
    const { rows: [updated] } = await db.query<{ retires_at: Date }>(
      "UPDATE signing_key SET retires_at = now() + ($2::double precision * interval '1 millisecond') WHERE kid = $1 RETURNING retires_at",
      [row.kid, overlap]
    )
    report.retiring.push({ kid: row.kid, purpose: row.purpose, retiresAt: updated.retires_at })
  }
  return report
}

/** The JWKS document of `GET /auth/jwks`. */
export function jwks (keys: readonly SigningKey[]): { keys: PublicJwk[] } {
  return { keys: keys.map((key) => key.publicJwk) }
}

/** Re-reads the key set at most this often when a token names a key it does not know (a rotation elsewhere). */
const UNKNOWN_KID_RELOAD_MS = 10_000
/** How often a running service picks up keys rotated by `npm run keys -- rotate`. @default 60 s */
export const DEFAULT_KEY_REFRESH_MS = 60_000
/** A new key signs only once it has been published this long: two refreshes of every replica. */
export const KEY_ACTIVATION_MS = 2 * DEFAULT_KEY_REFRESH_MS

export interface KeyRingOptions {
  /** Purposes this service signs with: each gets a key at startup when none exists. */
  signs: readonly KeyPurpose[]
  refreshMs?: number
  onRefreshError?: (err: unknown) => void
}

/**
 * The published keys of one service, in memory: signing picks the newest key of a purpose,
 * verification finds a key by `kid`. Refreshed in the background, so every replica follows a rotation.
 */
export class KeyRing {
  readonly #db: Pool
  readonly #secret: string
  readonly #options: KeyRingOptions
  #keys: SigningKey[] = []
  #lastMissReload = 0
  #reloading: Promise<void> | null = null
  #timer: NodeJS.Timeout | undefined

  constructor (db: Pool, secret: string, options: KeyRingOptions) {
    this.#db = db
    this.#secret = secret
    this.#options = options
  }

  /** Creates missing keys, loads the set and starts the background refresh. */
  async start (): Promise<void> {
    if (this.#options.signs.length > 0) await ensureSigningKeys(this.#db, this.#secret, this.#options.signs)
    await this.reload()
    this.#timer = setInterval(() => {
      this.reload().catch((err: unknown) => { this.#options.onRefreshError?.(err) })
    }, this.#options.refreshMs ?? DEFAULT_KEY_REFRESH_MS)
    this.#timer.unref()
  }

  stop (): void {
    clearInterval(this.#timer)
  }

  async reload (): Promise<void> {
    this.#reloading ??= readSigningKeys(this.#db, this.#secret).then((keys) => {
      this.#keys = keys
    }).finally(() => { this.#reloading = null })
    return this.#reloading
  }

  /**
   * The key new tokens of this purpose are signed with: the newest this secret can unseal that has
   * been published for `KEY_ACTIVATION_MS`, so every replica and every upstream's cached JWKS knows
   * it before a token names it (until then the key it replaces, still published, signs). With no key
   * that old (the first start), the one published longest signs.
   */
  signingKey (purpose: KeyPurpose, now: number = Date.now()): SigningKey & { privateKey: CryptoKey } {
    const usable = this.#keys.filter((k): k is SigningKey & { privateKey: CryptoKey } => k.purpose === purpose && k.privateKey !== null)
    // Newest first; with none published long enough, the one published longest.
    const key = usable.find((k) => k.createdAt.getTime() <= now - KEY_ACTIVATION_MS) ?? usable.at(-1)
    if (key === undefined) throw new Error(`no ${purpose} signing key is available`)
    return key
  }

  /** The published key of this purpose named `kid`, re-reading the set once if it is not known yet. */
  async verificationKey (kid: string, purpose: KeyPurpose): Promise<CryptoKey | null> {
    let key = this.#keys.find((k) => k.kid === kid)
    // Throttled: tokens naming random kids must not turn into a database query each.
    if (key === undefined && Date.now() - this.#lastMissReload > UNKNOWN_KID_RELOAD_MS) {
      this.#lastMissReload = Date.now()
      await this.reload()
      key = this.#keys.find((k) => k.kid === kid)
    }
    return key !== undefined && key.purpose === purpose ? key.publicKey : null
  }

  /** The JWKS of the purposes this service signs with (keys of a purpose out of use are not published). */
  jwks (): { keys: PublicJwk[] } {
    return jwks(this.#keys.filter((key) => this.#options.signs.includes(key.purpose)))
  }
}
