import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'

// The trivial upstream of the benchmark: drains the body, answers ~300 bytes of JSON.
const ANSWER = JSON.stringify({
  answer: 'Physical AI joins perception, planning and actuation in one loop; the chapter on sensors explains how a humanoid reads its joints.',
  sources: [{ chapter: 3, section: '3.2', score: 0.91 }, { chapter: 5, section: '5.1', score: 0.87 }],
  model: 'bench'
})

const server = createServer((req, res) => {
  req.resume()
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(ANSWER) })
    res.end(ANSWER)
  })
})
server.keepAliveTimeout = 60_000
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })}\n`)
})
process.on('SIGTERM', () => { server.closeAllConnections(); server.close(() => process.exit(0)) })
