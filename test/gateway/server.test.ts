import t from 'tap'
import type { Test } from 'tap'
import { spawn } from 'node:child_process'
import type { ChildProcessByStdio } from 'node:child_process'
import { once } from 'node:events'
import { connect } from 'node:net'
import type { Readable } from 'node:stream'
import { Agent, Client } from 'undici'
import { JWT_TEST_SECRET, startTestStack, TEST_ORIGIN } from '../helper.ts'
import { parseRawResponse } from '../raw-http.ts'
import type { RawResponse } from '../raw-http.ts'
import { recordingUpstream } from '../upstream.ts'

// `npm run start:gateway` as a process of its own (gateway/server.ts through shared/run.ts), against
// the stack's database and auth-core, in front of a RAG upstream that answers when the test says so.
const stack = await startTestStack(t)
const rag = await recordingUpstream(t)

interface GatewayProcess {
  url: string
  child: ChildProcessByStdio<null, Readable, Readable>
  /** Resolves once `pattern` has been printed on stderr; fails if the process exits first. */
  printed: (pattern: RegExp) => Promise<RegExpExecArray>
  exited: Promise<[number | null, NodeJS.Signals | null]>
  stderr: () => string
}

async function startGatewayProcess (t: Test): Promise<GatewayProcess> {
  const child = spawn(process.execPath, ['--import=tsx', 'gateway/server.ts'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PATH: process.env.PATH ?? '',
      DATABASE_URL: stack.databaseUrl,
      AUTH_CORE_URL: stack.authCoreUrl,
      RAG_UPSTREAM_URL: rag.url,
      JWT_SECRET: JWT_TEST_SECRET,
      ALLOWED_ORIGINS: TEST_ORIGIN,
      HOST: '127.0.0.1',
      PORT: '0',
      LOG_LEVEL: 'info'
    }
  })
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  const output = { stdout: '', stderr: '' }
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { output.stdout += chunk })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { output.stderr += chunk })
  const printedOn = (stream: 'stdout' | 'stderr', pattern: RegExp): Promise<RegExpExecArray> => new Promise((resolve, reject) => {
    const early = (): void => { reject(new Error(`the gateway exited before printing ${pattern}:\n${output.stdout}\n${output.stderr}`)) }
    const check = (): void => {
      const match = pattern.exec(output[stream])
      if (match === null) return
      child[stream].off('data', check)
      child.off('exit', early)
      resolve(match)
    }
    child[stream].on('data', check)
    child.once('exit', early)
    check()
  })
  const [, url] = await printedOn('stdout', /"msg":"Server listening at (http:\/\/127\.0\.0\.1:\d+)"/)
  return { url, child, printed: (pattern) => printedOn('stderr', pattern), exited, stderr: () => output.stderr.trim() }
}

/** Sends a RAG question the upstream holds, SIGTERMs the gateway while it is in flight, then lets the upstream answer. */
async function answeredAcrossSigterm (t: Test, gateway: GatewayProcess, client: Agent): Promise<void> {
  t.equal((await fetch(`${gateway.url}/health`)).status, 200, 'the gateway serves')
  rag.hold()
  const inFlight = client.request({ origin: gateway.url, path: '/api/v1/query', method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"q":"slow"}' })
  const received = await rag.nextRequest()
  t.equal(received.url, '/api/v1/query', 'the request is at the upstream, unanswered')

  gateway.child.kill('SIGTERM')
  await gateway.printed(/SIGTERM received, draining/)
  t.equal(gateway.child.exitCode, null, 'still running while the request is in flight')
  rag.release()

  const answer = await inFlight
  t.equal(answer.statusCode, 200, 'the in-flight request is answered')
  t.equal(answer.headers.connection, 'close', 'and tells the client not to reuse the connection')
  t.same(await answer.body.json(), { answer: 'ok', path: '/api/v1/query' }, 'with the upstream\'s answer')
}

t.test('SIGTERM drains: the in-flight request is answered, then the process exits 0', async (t) => {
  const gateway = await startGatewayProcess(t)
  const client = new Agent()
  await answeredAcrossSigterm(t, gateway, client)
  // A client that is done closes its connection (the next test keeps it open).
  await client.close()
  const [code, signal] = await gateway.exited
  t.equal(code, 0, `the process exits 0 (${gateway.stderr()})`)
  t.equal(signal, null, 'by itself, not killed')
})

// Regression: a connection that became idle after SIGTERM was never closed, so a keep-alive client
// (every browser, every load balancer) held the shutdown until the 10 s grace ran out (exit 1).
t.test('SIGTERM with a keep-alive client: the process still exits 0 once the answer is sent', async (t) => {
  const gateway = await startGatewayProcess(t)
  const client = new Agent({ keepAliveTimeout: 60_000 })
  t.teardown(() => client.destroy())
  await answeredAcrossSigterm(t, gateway, client)
  const [code, signal] = await gateway.exited
  t.equal(code, 0, `the process exits 0, not at the end of the grace period (${gateway.stderr()})`)
  t.equal(signal, null, 'by itself, not killed')
})

// Regression: a connection that never sent a request (a browser's spare, preconnected one; undici
// opens one after an aborted fetch) is not "idle" to Node, and server.close() stops the headers
// timeout that would have closed it: it held SIGTERM until the grace ran out (exit 1).
t.test('SIGTERM with a connection that never sent a request: the process still exits 0 at once', async (t) => {
  const gateway = await startGatewayProcess(t)
  const { port, hostname } = new URL(gateway.url)
  const spare = connect(Number(port), hostname)
  t.teardown(() => { spare.destroy() })
  await once(spare, 'connect')
  const closed = once(spare, 'close')
  t.equal((await fetch(`${gateway.url}/health`)).status, 200, 'the gateway serves')
  const signalled = performance.now()
  gateway.child.kill('SIGTERM')
  const [code, signal] = await gateway.exited
  const took = performance.now() - signalled
  t.equal(code, 0, `the process exits 0 (${gateway.stderr()})`)
  t.equal(signal, null, 'by itself, not killed')
  t.ok(took < 3000, `within ${took.toFixed(0)} ms, not at the end of the 10 s grace`)
  await closed
})

/**
 * A RAG question on a connection of its own, sent but for the last byte of its body: it has begun
 * (the connection is not idle), and `finish` sends the rest when the test says.
 */
async function halfSent (url: string): Promise<{ finish: () => Promise<RawResponse> }> {
  const { port, hostname } = new URL(url)
  const socket = connect(Number(port), hostname)
  await once(socket, 'connect')
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => chunks.push(chunk))
  const closed = once(socket, 'close')
  const body = '{"q":"late"}'
  socket.write(`POST /api/v1/query HTTP/1.1\r\nHost: ${hostname}:${port}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, -1)}`)
  return {
    finish: async () => {
      socket.write(body.slice(-1))
      await closed
      return parseRawResponse(Buffer.concat(chunks).toString('utf8'))
    }
  }
}

// Deliver 4 of issue 14 and item 5 of issue 13: several keep-alive clients with requests in flight,
// and a request that arrives whole on an open connection during the drain.
t.test('SIGTERM with keep-alive clients mid-request: every request answered, also one that arrives during the drain; exit 0 once they are', async (t) => {
  const gateway = await startGatewayProcess(t)
  const clients = [0, 1, 2].map(() => new Client(gateway.url, { keepAliveTimeout: 60_000 }))
  t.teardown(() => Promise.all(clients.map(async (client) => client.destroy())))
  for (const client of clients) t.equal((await client.request({ path: '/health', method: 'GET' })).statusCode, 200, 'a keep-alive connection')
  rag.hold()
  const inFlight = clients.map(async (client) => {
    const answer = await client.request({ path: '/api/v1/query', method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"q":"slow"}' })
    return { status: answer.statusCode, connection: answer.headers.connection, body: await answer.body.json(), at: performance.now() }
  })
  for (let i = 0; i < clients.length; i++) await rag.nextRequest()
  const late = await halfSent(gateway.url)

  gateway.child.kill('SIGTERM')
  await gateway.printed(/SIGTERM received, draining/)
  t.equal(gateway.child.exitCode, null, 'still running while requests are in flight')
  const lateArrived = rag.nextRequest()
  const lateAnswer = late.finish()
  t.equal((await lateArrived).body, '{"q":"late"}', 'a request whose body completes during the drain is served')

  rag.release()
  const answers = await Promise.all(inFlight)
  for (const answer of answers) {
    t.match(answer, { status: 200, connection: 'close', body: { answer: 'ok' } }, 'an in-flight request answered, its connection then closed')
  }
  const served = await lateAnswer
  t.equal(served.status, 200, 'the late request is answered')
  t.equal(served.headers.connection, 'close')
  const lastAnswer = Math.max(performance.now(), ...answers.map((answer) => answer.at))
  const [code, signal] = await gateway.exited
  const exitedAfter = performance.now() - lastAnswer
  t.equal(code, 0, `the process exits 0 (${gateway.stderr()})`)
  t.equal(signal, null, 'by itself, not killed')
  // About 200 ms on an idle machine; the bound is the 10 s grace it must not wait for, with room for a busy one.
  t.ok(exitedAfter < 3000, `exited ${exitedAfter.toFixed(0)} ms after the last answer, with the keep-alive clients still open, not at the end of the grace`)
})
