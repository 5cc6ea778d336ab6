import t from 'tap'
import type { Test } from 'tap'
import { spawn } from 'node:child_process'
import type { ChildProcessByStdio } from 'node:child_process'
import { once } from 'node:events'
import { connect } from 'node:net'
import type { Readable } from 'node:stream'
import { Agent } from 'undici'
import { JWT_TEST_SECRET, startTestStack, TEST_ORIGIN } from '../helper.ts'
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
