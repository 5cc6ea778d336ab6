import { Agent, request } from 'undici'
import { BODY } from './load.ts'

/*
 * The streaming scenarios (issue 14): a chatbot's answer as server-sent events, 20 events 10 ms
 * apart (upstream.ts with `?events=&interval=`), read by a client in this process that notes when
 * the first event and the end arrive. autocannon measures whole answers only, so this is its own.
 */

export const STREAM_EVENTS = 20
export const STREAM_INTERVAL_MS = 10
/** Streams at once in the latency scenarios: a moderate load, so the figures are the path's, not a queue's. */
const LATENCY_CONCURRENCY = 10

export interface StreamFigures {
  streams: number
  /** From sending the request to the first event, ms. */
  firstEventP50: number
  firstEventP99: number
  /** From sending the request to the end of the stream, ms (the upstream alone takes 19 × 10 ms). */
  totalP50: number
  totalP99: number
  errors: number
}

export interface OpenStreamsFigures {
  streams: number
  /** The gateway's RSS (MB) before, with every stream open (each past its first event), and after. */
  rssBeforeMB: number
  rssOpenMB: number
  rssAfterMB: number
  errors: number
}

function percentile (values: number[], p: number): number {
  if (values.length === 0) return 0
  const sorted = [...values].sort((a, b) => a - b)
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] * 100) / 100
}

/** One streamed answer: when its first event and its end came, ms after the request was sent. */
async function oneStream (dispatcher: Agent, url: string, onFirst?: () => void): Promise<{ first: number, total: number }> {
  const started = performance.now()
  const { statusCode, body } = await request(url, {
    method: 'POST',
    dispatcher,
    headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
    body: BODY
  })
  if (statusCode !== 200) {
    await body.dump()
    throw new Error(`answered ${statusCode}`)
  }
  let first = -1
  for await (const chunk of body) {
    if (first === -1 && (chunk as Buffer).length > 0) {
      first = performance.now() - started
      onFirst?.()
    }
  }
  return { first, total: performance.now() - started }
}

function streamUrl (base: string, events: number, interval: number): string {
  return `${base}/api/v1/query?events=${events}&interval=${interval}`
}

/** Streams back to back for `seconds`, `LATENCY_CONCURRENCY` at a time. */
export async function streamLatency (base: string, seconds: number): Promise<StreamFigures> {
  const dispatcher = new Agent({ connections: LATENCY_CONCURRENCY, keepAliveTimeout: 10_000 })
  const url = streamUrl(base, STREAM_EVENTS, STREAM_INTERVAL_MS)
  const firsts: number[] = []
  const totals: number[] = []
  let errors = 0
  const deadline = performance.now() + seconds * 1000
  try {
    await Promise.all(Array.from({ length: LATENCY_CONCURRENCY }, async () => {
      while (performance.now() < deadline) {
        try {
          const { first, total } = await oneStream(dispatcher, url)
          firsts.push(first)
          totals.push(total)
        } catch {
          errors += 1
        }
      }
    }))
  } finally {
    await dispatcher.close()
  }
  return {
    streams: firsts.length,
    firstEventP50: percentile(firsts, 0.5),
    firstEventP99: percentile(firsts, 0.99),
    totalP50: percentile(totals, 0.5),
    totalP99: percentile(totals, 0.99),
    errors
  }
}

/**
 * `count` streams open at once, each long enough (300 events 10 ms apart, 3 s) to still be open when
 * the last has started; `rss` is asked for before, once every stream has had its first event, and
 * after they ended.
 */
export async function openStreams (base: string, count: number, rss: () => Promise<number>): Promise<OpenStreamsFigures> {
  const dispatcher = new Agent({ connections: count, keepAliveTimeout: 10_000 })
  const url = streamUrl(base, 300, STREAM_INTERVAL_MS)
  const mb = (bytes: number): number => Math.round(bytes / 1024 / 1024)
  const rssBefore = await rss()
  let started = 0
  let errors = 0
  let allOpen: () => void = () => {}
  const opened = new Promise<void>((resolve) => { allOpen = resolve })
  const counted = (): void => {
    started += 1
    if (started === count) allOpen()
  }
  try {
    const streams = Array.from({ length: count }, async () => {
      let open = false
      const onFirst = (): void => {
        open = true
        counted()
      }
      // A stream that failed before its first event counts as started, or the wait would never end.
      await oneStream(dispatcher, url, onFirst).catch(() => {
        errors += 1
        if (!open) counted()
      })
    })
    await opened
    const rssOpen = await rss()
    await Promise.all(streams)
    return { streams: count, rssBeforeMB: mb(rssBefore), rssOpenMB: mb(rssOpen), rssAfterMB: mb(await rss()), errors }
  } finally {
    await dispatcher.close()
  }
}
