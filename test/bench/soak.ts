import type { ChildProcess } from 'node:child_process'
import { stats } from './children.ts'
import { load } from './load.ts'
import type { Rotation } from './load.ts'
import type { MemorySample } from './service-messages.ts'

/*
 * `--soak S`: the public query route for S seconds under a mixed population (session cookies, client
 * tokens, forged cookies, taken in turn), the gateway's memory sampled every 30 s; then its live heap
 * after a full collection, before and after its identity caches have expired and been swept.
 */

export const SOAK_INTERVAL_SECONDS = 30
// The gateway's SESSION_CACHE_TTL (5 s) and its sweep timer (30 s), with a margin.
const SWEPT_AFTER_MS = 40_000

export interface SoakSample {
  /** Seconds since the soak began; `null` for the after-load samples. */
  at: number | null
  label: string
  /** Over the slice that ended at this sample. */
  rps: number | null
  p99: number | null
  errors: number
  memory: MemorySample
  caches: Record<string, number> | null
}

export async function soak (gateway: ChildProcess, url: string, rotation: Rotation, seconds: number, log: (line: string) => void): Promise<SoakSample[]> {
  const sample = async (label: string, at: number | null, figures: { rps: number, p99: number, errors: number } | null, gc = false): Promise<SoakSample> => {
    const { memory, caches } = await stats(gateway, gc)
    const result = { at, label, rps: figures?.rps ?? null, p99: figures?.p99 ?? null, errors: figures?.errors ?? 0, memory, caches }
    log(`  ${label.padEnd(24)} RSS ${mb(memory.rss)} MB, heap used ${mb(memory.heapUsed)} MB${figures === null ? '' : `, ${figures.rps.toFixed(0)} req/s`}`)
    return result
  }
  const samples = [await sample('before', 0, null)]
  for (let elapsed = 0; elapsed < seconds;) {
    const slice = Math.min(SOAK_INTERVAL_SECONDS, seconds - elapsed)
    const figures = await load({ url, rotate: rotation }, slice)
    elapsed += slice
    samples.push(await sample(`${elapsed} s`, elapsed, figures))
  }
  samples.push(await sample('after a full GC', null, null, true))
  await new Promise((resolve) => setTimeout(resolve, SWEPT_AFTER_MS))
  samples.push(await sample('caches swept, full GC', null, null, true))
  return samples
}

export const mb = (bytes: number): string => (bytes / 1024 / 1024).toFixed(0)

/** The samples as a table: what the kernel counts against what V8 accounts for. */
export function soakTable (samples: readonly SoakSample[]): string[] {
  const columns = ['sample', 'req/s', 'RSS', 'anon', 'file', 'heap used', 'heap total', 'V8 resident', 'new space', 'other anon', 'external', 'caches']
  const rows = samples.map((s) => {
    const m = s.memory
    const caches = s.caches === null ? '' : Object.values(s.caches).join('/')
    return [s.label, s.rps === null ? '' : s.rps.toFixed(0), mb(m.rss), mb(m.rssAnon), mb(m.rssFile), mb(m.heapUsed), mb(m.heapTotal), mb(m.heapPhysical), mb(m.spaces.new_space?.committed ?? 0), mb(m.rssAnon - m.heapPhysical), mb(m.external), caches]
  })
  return [
    `| ${columns.join(' | ')} |`,
    `|${columns.map((c, i) => i === 0 ? '---|' : '---:|').join('')}`,
    ...rows.map((row) => `| ${row.join(' | ')} |`)
  ]
}
