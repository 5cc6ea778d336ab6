import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import Fastify from 'fastify'
import { Pool } from 'undici'

/*
 * Reference points for the gateway's overhead, each the least a proxy of its kind does: `node` is
 * plain node:http forwarding over an undici pool with buffered bodies (an event stream piped as it
 * comes, for the streaming scenarios); `fastify` is a bare Fastify route doing the same. No policy,
 * headers, limits or identity.
 */
const [kind, upstreamUrl] = process.argv.slice(2)
const pool = new Pool(upstreamUrl, { connections: 128 })

async function forward (path: string, body: Buffer): Promise<{ status: number, body: Buffer }> {
  const response = await pool.request({ method: 'POST', path, headers: { 'content-type': 'application/json' }, body })
  return { status: response.statusCode, body: Buffer.from(await response.body.arrayBuffer()) }
}

function ready (port: number): void {
  process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${port}` })}\n`)
}

if (kind === 'fastify') {
  const app = Fastify({ logger: false })
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_request, body, done) => { done(null, body) })
  app.post('/api/v1/query', async (request, reply) => {
    const answer = await forward(request.url, request.body as Buffer)
    return reply.code(answer.status).header('content-type', 'application/json').send(answer.body)
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  ready((app.server.address() as AddressInfo).port)
} else {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      if (req.headers.accept === 'text/event-stream') {
        pool.request({ method: 'POST', path: req.url ?? '/', headers: { 'content-type': 'application/json', accept: 'text/event-stream' }, body: Buffer.concat(chunks) }).then(async (answer) => {
          res.writeHead(answer.statusCode, { 'content-type': 'text/event-stream' })
          for await (const chunk of answer.body) res.write(chunk)
          res.end()
        }).catch(() => { res.destroy() })
        return
      }
      forward(req.url ?? '/', Buffer.concat(chunks)).then((answer) => {
        res.writeHead(answer.status, { 'content-type': 'application/json', 'content-length': answer.body.length })
        res.end(answer.body)
      }, () => {
        res.writeHead(502)
        res.end()
      })
    })
  })
  server.listen(0, '127.0.0.1', () => { ready((server.address() as AddressInfo).port) })
}
process.on('SIGTERM', () => process.exit(0))
