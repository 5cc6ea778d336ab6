/* What the bench driver and its services (service.ts) say to each other over IPC. */

/** A service's memory, in bytes: what the kernel counts (RSS) and what V8 and malloc account for. */
export interface MemorySample {
  rss: number
  /** Anonymous resident pages (V8's heap, malloc's arenas, buffers), from /proc/self/smaps_rollup. */
  rssAnon: number
  /** Resident pages of mapped files (the node binary, shared libraries). */
  rssFile: number
  /** Pages freed with MADV_FREE, still counted in RSS until the kernel needs them (smaps_rollup). */
  lazyFree: number
  heapUsed: number
  heapTotal: number
  /** The pages of V8's heap actually resident (`total_physical_size`). */
  heapPhysical: number
  /** What V8 itself holds through malloc (`malloced_memory`). */
  v8Malloced: number
  external: number
  arrayBuffers: number
  /** Committed and used bytes of each V8 space (`new_space`, `old_space`, `code_space`…). */
  spaces: Record<string, { committed: number, used: number }>
}

export interface ServiceStats {
  type: 'stats'
  cpu: NodeJS.CpuUsage
  rss: number
  memory: MemorySample
  /** The gateway's identity caches, in entries. */
  caches: Record<string, number> | null
  /** auth-core: get-session requests answered so far. */
  sessionLookups: number | null
}

/** A reader seeded straight through auth-core's better-auth: its user id and its session cookie (`name=value`). */
export interface SeededReader {
  userId: string
  cookie: string
}

export type BenchMessage =
  | { type: 'stats', id: number, gc: boolean }
  | { type: 'seed', id: number, count: number, emailPrefix: string, password: string }
  | { type: 'unseed', id: number, userIds: string[] }

export type BenchReply = { id: number } & (
  | ServiceStats
  | { type: 'seeded', readers: SeededReader[], ms: number }
  | { type: 'unseeded', ms: number }
  | { type: 'error', message: string }
)
