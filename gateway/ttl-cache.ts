export interface TtlCacheLimits<K, V> {
  /** Entries held at most; the oldest written goes first. @default 10000 */
  maxEntries?: number
  /**
   * Bytes held at most, as `sizeOf` counts each entry; the oldest written go first, and an entry
   * larger than the whole bound is not held at all. @default Infinity
   */
  maxBytes?: number
  /** The size of one entry in bytes (key and value). Required with `maxBytes`; `estimateEntrySize` will do. */
  sizeOf?: (value: V, key: K) => number
}

interface Entry<V> {
  value: V
  expires: number
  bytes: number
}

const DEFAULT_MAX_ENTRIES = 10_000

/**
 * A small in-process cache whose entries expire after a fixed time; bounded in entries and
 * optionally in bytes, dropping the oldest written entry when full. Used on the hot path, where a
 * Postgres or auth-core round trip per request is what it saves.
 */
export class TtlCache<K, V> {
  readonly #entries = new Map<K, Entry<V>>()
  readonly #ttlMs: number
  readonly #maxEntries: number
  readonly #maxBytes: number
  readonly #sizeOf: ((value: V, key: K) => number) | null
  #bytes = 0

  /** `limits` is the entry bound alone, or the bounds. */
  constructor (ttlMs: number, limits: number | TtlCacheLimits<K, V> = {}) {
    const { maxEntries = DEFAULT_MAX_ENTRIES, maxBytes = Infinity, sizeOf } = typeof limits === 'number' ? { maxEntries: limits } : limits
    if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new RangeError(`TtlCache maxEntries must be a whole number of at least 1, not ${maxEntries}`)
    if (!(maxBytes > 0)) throw new RangeError(`TtlCache maxBytes must be above 0, not ${maxBytes}`)
    if (maxBytes !== Infinity && sizeOf === undefined) throw new TypeError('TtlCache maxBytes needs sizeOf: the cache cannot count bytes on its own')
    this.#ttlMs = ttlMs
    this.#maxEntries = maxEntries
    this.#maxBytes = maxBytes
    this.#sizeOf = maxBytes === Infinity ? null : sizeOf ?? null
  }

  get (key: K): V | undefined {
    const entry = this.#entries.get(key)
    if (entry === undefined) return undefined
    if (entry.expires > Date.now()) return entry.value
    this.#remove(key, entry)
    return undefined
  }

  /** Holds the value for `ttlMs`; a key written again counts as the newest entry. */
  set (key: K, value: V, ttlMs: number = this.#ttlMs): void {
    const held = this.#entries.get(key)
    if (held !== undefined) this.#remove(key, held)
    const bytes = this.#sizeOf === null ? 0 : this.#sizeOf(value, key)
    // Holding it would mean dropping everything else and still being over the bound.
    if (bytes > this.#maxBytes) return
    this.#entries.set(key, { value, expires: Date.now() + ttlMs, bytes })
    this.#bytes += bytes
    while (this.#entries.size > this.#maxEntries || this.#bytes > this.#maxBytes) {
      const [oldestKey, oldest] = this.#entries.entries().next().value as [K, Entry<V>]
      this.#remove(oldestKey, oldest)
    }
  }

  delete (key: K): void {
    const entry = this.#entries.get(key)
    if (entry !== undefined) this.#remove(key, entry)
  }

  clear (): void {
    this.#entries.clear()
    this.#bytes = 0
  }

  /** Deletes every expired entry: entries nobody reads again would otherwise stay until pushed out. */
  sweep (now: number = Date.now()): void {
    for (const [key, entry] of this.#entries) if (entry.expires <= now) this.#remove(key, entry)
  }

  get size (): number {
    return this.#entries.size
  }

  /** What the held entries weigh, as `sizeOf` counted them (0 without a byte bound). */
  get bytes (): number {
    return this.#bytes
  }

  /** Deletes every entry whose value matches. */
  deleteWhere (match: (value: V, key: K) => boolean): void {
    for (const [key, entry] of this.#entries) if (match(entry.value, key)) this.#remove(key, entry)
  }

  #remove (key: K, entry: Entry<V>): void {
    this.#entries.delete(key)
    this.#bytes -= entry.bytes
  }
}

// What V8 spends on the parts of a plain JSON-like value on a 64-bit heap, roughly: headers,
// property slots, one byte per Latin-1 character (two otherwise).
const STRING_HEADER_BYTES = 16
const OBJECT_HEADER_BYTES = 32
const SLOT_BYTES = 8
// Holding an entry at all: the Map's slots and the entry record.
const ENTRY_BYTES = 96
const MAX_DEPTH = 8
const LATIN1 = /^[\u0000-\u00ff]*$/

/**
 * The heap bytes one cache entry holds, approximately: strings by their length, objects and arrays
 * by their slots and contents (a value reachable twice counted once), and the entry itself. Meant
 * for `maxBytes` bounds, not for accounting: within about 25 % of what V8 reports for the
 * gateway's entries (parsed sessions, verified tokens, revocation generations, signed tokens).
 */
export function estimateEntrySize (value: unknown, key: unknown): number {
  const seen = new Set<object>()
  const walk = (item: unknown, depth: number): number => {
    if (typeof item === 'string') return STRING_HEADER_BYTES + item.length * (LATIN1.test(item) ? 1 : 2)
    if (item === null || typeof item !== 'object') return SLOT_BYTES
    if (seen.has(item) || depth > MAX_DEPTH) return SLOT_BYTES
    seen.add(item)
    let bytes = OBJECT_HEADER_BYTES
    if (item instanceof Date) return bytes
    if (Array.isArray(item)) {
      for (const element of item as unknown[]) bytes += SLOT_BYTES + walk(element, depth + 1)
      return bytes
    }
    // Property names live in the shape V8 shares between objects alike: a slot each, not a string.
    for (const property of Object.values(item)) bytes += SLOT_BYTES + walk(property, depth + 1)
    return bytes
  }
  return ENTRY_BYTES + walk(key, 0) + walk(value, 0)
}
