/**
 * A streamed RAG answer read as events: server-sent events parsed as a browser's `EventSource`
 * would, NDJSON one event a line, any other answer one event. Failures are events too (never
 * thrown): the gateway ends a broken stream with `event: error` (docs/streaming.md), and the client
 * ends it the same way when the answer is an error, the gateway cannot be reached or the body breaks off.
 */
import { isErrorBody, messageOf, NETWORK_ERROR, UNEXPECTED_RESPONSE } from './failure.ts'
import type { GatewayError } from './failure.ts'

/** One event of a streamed answer. */
export interface RagEvent {
  /** The SSE event type: `message` unless the upstream named one; `error` for a failure. */
  event: string
  /** The event's data (lines joined with `\n`); JSON as text for NDJSON lines and whole answers. */
  data: string
  /** The SSE `id` last set, if any. */
  id?: string
  /** On `error` events from the gateway or the client: the failure as the other calls report it. */
  error?: GatewayError
}

export interface RagStreamOptions {
  /** Aborting it closes the connection at once (the gateway then cancels the upstream call) and ends the iteration. */
  signal?: AbortSignal
}

/** The answer's body broke off before its end (the connection was cut). */
export const STREAM_INTERRUPTED = 'stream_interrupted'

function failure (status: number, error: string, message: string): RagEvent {
  const failed: GatewayError = { error, message, status }
  return { event: 'error', data: JSON.stringify({ error, message }), error: failed }
}

function errorOf (data: string, status: number): GatewayError | undefined {
  let body: unknown
  try {
    body = JSON.parse(data)
  } catch {
    return undefined
  }
  return isErrorBody(body) ? { error: body.error, message: body.message, status } : undefined
}

/**
 * The SSE parser of the HTML standard ("event stream interpretation"): lines end with CRLF, LF or
 * CR; `data` lines accumulate; a blank line dispatches; comments and `retry` are ignored; an event
 * left without its blank line when the stream ends is dropped.
 */
export class EventStreamParser {
  #buffer = ''
  #data: string[] = []
  #event = ''
  #id: string | undefined
  #started = false

  /** Feeds decoded text; returns the events it completed. */
  push (text: string): RagEvent[] {
    let input = this.#buffer + text
    if (!this.#started && input.length > 0) {
      this.#started = true
      if (input.charCodeAt(0) === 0xfeff) input = input.slice(1)
    }
    const events: RagEvent[] = []
    let start = 0
    for (let i = 0; i < input.length; i++) {
      const c = input.charCodeAt(i)
      if (c !== 10 && c !== 13) continue
      // A CR at the end of the text may be the first half of a CRLF: wait for the next chunk.
      if (c === 13 && i === input.length - 1) break
      this.#line(input.slice(start, i), events)
      if (c === 13 && input.charCodeAt(i + 1) === 10) i++
      start = i + 1
    }
    this.#buffer = input.slice(start)
    return events
  }

  #line (line: string, events: RagEvent[]): void {
    if (line === '') {
      if (this.#data.length > 0) {
        const event: RagEvent = { event: this.#event === '' ? 'message' : this.#event, data: this.#data.join('\n') }
        if (this.#id !== undefined) event.id = this.#id
        events.push(event)
      }
      this.#data = []
      this.#event = ''
      return
    }
    if (line.charCodeAt(0) === 58) return // ':' a comment
    const colon = line.indexOf(':')
    const field = colon === -1 ? line : line.slice(0, colon)
    let value = colon === -1 ? '' : line.slice(colon + 1)
    if (value.charCodeAt(0) === 32) value = value.slice(1)
    if (field === 'data') this.#data.push(value)
    else if (field === 'event') this.#event = value
    else if (field === 'id' && !value.includes('\0')) this.#id = value === '' ? undefined : value
  }
}

function isAbort (err: unknown, signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true || (err instanceof Error && err.name === 'AbortError')
}

/**
 * POSTs `body` as JSON to `url` with the cookie and yields the answer's events as they arrive.
 * Breaking out of the loop or aborting `signal` closes the connection.
 */
export async function * streamEvents (doFetch: typeof fetch, url: string, body: unknown, options: RagStreamOptions = {}): AsyncGenerator<RagEvent, void, undefined> {
  const { signal } = options
  let response: Response
  try {
    response = await doFetch(url, {
      method: 'POST',
      credentials: 'include',
      headers: { accept: 'text/event-stream, application/x-ndjson, application/json', 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal
    })
  } catch (err) {
    if (isAbort(err, signal)) return
    yield failure(0, NETWORK_ERROR, `The gateway could not be reached: ${messageOf(err)}`)
    return
  }
  const type = (response.headers.get('content-type') ?? '').toLowerCase()
  if (!response.ok) {
    let text = ''
    try {
      text = await response.text()
    } catch (err) {
      if (isAbort(err, signal)) return
    }
    const error = errorOf(text, response.status)
    yield error !== undefined
      ? failure(response.status, error.error, error.message)
      : failure(response.status, UNEXPECTED_RESPONSE, `The gateway answered ${response.status} ${response.statusText}`.trim())
    return
  }
  if (response.body === null) return
  const sse = type.startsWith('text/event-stream')
  const ndjson = type.startsWith('application/x-ndjson')
  const parser = new EventStreamParser()
  const decoder = new TextDecoder()
  const reader = response.body.getReader()
  let pending = ''
  let done = false
  try {
    for (;;) {
      let chunk: ReadableStreamReadResult<Uint8Array>
      try {
        chunk = await reader.read()
      } catch (err) {
        done = true
        if (isAbort(err, signal)) return
        yield failure(response.status, STREAM_INTERRUPTED, `The answer broke off: ${messageOf(err)}`)
        return
      }
      const text = chunk.done ? decoder.decode() : decoder.decode(chunk.value, { stream: true })
      if (sse) {
        for (const event of parser.push(text)) {
          if (event.event === 'error') {
            const error = errorOf(event.data, response.status)
            if (error !== undefined) event.error = error
          }
          yield event
        }
      } else if (ndjson) {
        pending += text
        let newline: number
        while ((newline = pending.indexOf('\n')) !== -1) {
          const line = pending.slice(0, newline).trim()
          pending = pending.slice(newline + 1)
          if (line !== '') yield { event: 'message', data: line }
        }
        if (chunk.done && pending.trim() !== '') yield { event: 'message', data: pending.trim() }
      } else {
        pending += text
        if (chunk.done) yield { event: 'message', data: pending }
      }
      if (chunk.done) {
        done = true
        return
      }
    }
  } finally {
    // The loop was left early (break, return, throw in its body): close the connection.
    if (!done) reader.cancel().catch(() => {})
  }
}
