import { connect } from 'node:net'

export interface RawResponse {
  status: number
  headers: Record<string, string>
  body: string
}

/**
 * Sends one request exactly as written, over a plain socket: `fetch` and `app.inject` would
 * normalise `..`, `%2e`, `\` and `#` before the gateway ever saw them.
 */
export async function rawRequest (baseUrl: string, method: string, target: string, headers: Array<[string, string]> = [], body = ''): Promise<RawResponse> {
  const url = new URL(baseUrl)
  const lines = [`${method} ${target} HTTP/1.1`]
  if (!headers.some(([name]) => name.toLowerCase() === 'host')) lines.push(`Host: ${url.host}`)
  for (const [name, value] of headers) lines.push(`${name}: ${value}`)
  if (body !== '' || method === 'POST') lines.push(`Content-Length: ${Buffer.byteLength(body)}`)
  lines.push('Connection: close')
  const payload = `${lines.join('\r\n')}\r\n\r\n${body}`
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname)
    const chunks: Buffer[] = []
    socket.setTimeout(10_000, () => { socket.destroy(new Error(`no answer to ${method} ${target}`)) })
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.on('error', reject)
    socket.on('close', () => { resolve(parseRawResponse(Buffer.concat(chunks).toString('utf8'))) })
    socket.write(payload)
  })
}

/** One HTTP/1.1 answer as a server wrote it (a chunked body decoded). */
export function parseRawResponse (text: string): RawResponse {
  const headerEnd = text.indexOf('\r\n\r\n')
  const head = text.slice(0, headerEnd === -1 ? text.length : headerEnd).split('\r\n')
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? '')?.[1] ?? 0)
  const parsed: Record<string, string> = {}
  for (const line of head.slice(1)) {
    const at = line.indexOf(':')
    if (at > 0) parsed[line.slice(0, at).trim().toLowerCase()] = line.slice(at + 1).trim()
  }
  let rest = headerEnd === -1 ? '' : text.slice(headerEnd + 4)
  if (parsed['transfer-encoding'] === 'chunked') {
    let decoded = ''
    while (rest.length > 0) {
      const eol = rest.indexOf('\r\n')
      const size = parseInt(rest.slice(0, eol), 16)
      if (!(size > 0)) break
      decoded += rest.slice(eol + 2, eol + 2 + size)
      rest = rest.slice(eol + 2 + size + 2)
    }
    rest = decoded
  }
  return { status, headers: parsed, body: rest }
}
