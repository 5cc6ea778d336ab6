/**
 * A small in-process cache whose entries expire after a fixed time; bounded, dropping the oldest
 * entry when full. Used on the hot path, where a Postgres or auth-core round trip per request is
 * what it saves.
 */
export class TtlCache<K, V> {
  readonly #entries = new Map<K, { value: V, expires: number }>()
  readonly #ttlMs: number
  readonly #maxEntries: number

  constructor (ttlMs: number, maxEntries = 10_000) {
    this.#ttlMs = ttlMs
    this.#maxEntries = maxEntries
  }

  get (key: K): V | undefined {
    const entry = this.#entries.get(key)
    if (entry === undefined) return undefined
    if (entry.expires > Date.now()) return entry.value
    this.#entries.delete(key)
    return undefined
  }

  set (key: K, value: V, ttlMs: number = this.#ttlMs): void {
    if (this.#entries.size >= this.#maxEntries && !this.#entries.has(key)) {
      const oldest = this.#entries.keys().next()
      if (oldest.done !== true) this.#entries.delete(oldest.value)
    }
    this.#entries.set(key, { value, expires: Date.now() + ttlMs })
  }

  delete (key: K): void {
    this.#entries.delete(key)
  }

  clear (): void {
    this.#entries.clear()
  }

  /** Deletes every expired entry: entries nobody reads again would otherwise stay until pushed out. */
  sweep (now: number = Date.now()): void {
    for (const [key, entry] of this.#entries) if (entry.expires <= now) this.#entries.delete(key)
  }

  get size (): number {
    return this.#entries.size
  }

  /** Deletes every entry whose value matches. */
  deleteWhere (match: (value: V, key: K) => boolean): void {
    for (const [key, entry] of this.#entries) if (match(entry.value, key)) this.#entries.delete(key)
  }
}
