import { readFileSync } from 'node:fs'
import { getHeapSpaceStatistics, getHeapStatistics } from 'node:v8'
import type { MemorySample } from './service-messages.ts'

/** A line of /proc/self/smaps_rollup (`Anonymous:   123456 kB`), in bytes; 0 where /proc is absent. */
function rollupBytes (rollup: string, field: string): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(rollup)
  return match === null ? 0 : Number(match[1]) * 1024
}

/** This process's memory as the kernel, V8 and malloc see it (bytes). */
export function memorySample (): MemorySample {
  let rollup = ''
  try {
    rollup = readFileSync('/proc/self/smaps_rollup', 'utf8')
  } catch {}
  const usage = process.memoryUsage()
  const rollupRss = rollupBytes(rollup, 'Rss')
  const rollupAnon = rollupBytes(rollup, 'Anonymous')
  const heap = getHeapStatistics()
  const spaces: MemorySample['spaces'] = {}
  for (const space of getHeapSpaceStatistics()) spaces[space.space_name] = { committed: space.physical_space_size, used: space.space_used_size }
  return {
    // smaps_rollup walks the page tables: exact, where the kernel's per-CPU RSS counters (what
    // process.memoryUsage() and /proc/self/status read) can lag by tens of megabytes.
    rss: rollupRss > 0 ? rollupRss : usage.rss,
    rssAnon: rollupAnon,
    rssFile: Math.max(0, rollupRss - rollupAnon),
    lazyFree: rollupBytes(rollup, 'LazyFree'),
    heapUsed: usage.heapUsed,
    heapTotal: usage.heapTotal,
    heapPhysical: heap.total_physical_size,
    v8Malloced: heap.malloced_memory,
    external: usage.external,
    arrayBuffers: usage.arrayBuffers,
    spaces
  }
}
