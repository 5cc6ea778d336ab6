import { createServer } from 'node:http'
import type { ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

// The trivial upstream of the benchmark: drains the body, answers ~300 bytes of JSON.
const ANSWER = JSON.stringify({
  answer: 'Physical AI joins perception, planning and actuation in one loop; the chapter on sensors explains how a humanoid reads its joints.',
  sources: [{ chapter: 3, section: '3.2', score: 0.91 }, { chapter: 5, section: '5.1', score: 0.87 }],
  model: 'bench'
})

// `?events=N&interval=MS`: a chatbot's answer instead, N server-sent events MS apart (streams.ts).
const TOKEN_EVENT = `data: ${JSON.stringify({ token: ' humanoid' })}\n\n`
const LAST_EVENT = `event: done\ndata: ${JSON.stringify({ sources: [{ chapter: 3, section: '3.2' }] })}\n\n`

function stream (res: ServerResponse, events: number, interval: number): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' })
  let sent = 0
  const next = (): void => {
    if (res.destroyed) return
    sent += 1
    if (sent >= events) {
      res.end(LAST_EVENT)
      return
    }
    res.write(TOKEN_EVENT)
    setTimeout(next, interval)
  }
  next()
}

const server = createServer((req, res) => {
  req.resume()
  req.on('end', () => {
    const query = req.url?.indexOf('?') ?? -1
    if (query !== -1) {
      const params = new URLSearchParams(req.url?.slice(query + 1))
      stream(res, Number(params.get('events') ?? 20), Number(params.get('interval') ?? 10))
      return
    }
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(ANSWER) })
    res.end(ANSWER)
  })
})
server.keepAliveTimeout = 60_000
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })}\n`)
})
process.on('SIGTERM', () => { server.closeAllConnections(); server.close(() => process.exit(0)) })
