import t from 'tap'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'
import { postJson } from '../helper.ts'
import { PASSWORD, signUp } from '../readers.ts'
import { stackWithUpstreams } from '../upstream.ts'

/*
 * The examples docs/scripts.md shows, run as a reader would run them against the real stack: the
 * Python client (standard library only, Debian's python3) and the curl + jq script, each with a
 * login (ask, refresh, ask, logout) and with an API key. The RAG upstream must hear who asked.
 */
const run = promisify(execFile)
const example = (name: string): string => fileURLToPath(new URL(`../../examples/${name}`, import.meta.url))
const { stack, rag } = await stackWithUpstreams(t, { AUTH_RATE_LIMIT_MAX: '1000' })
const reader = await signUp(stack)
const created = await postJson(reader.browser, `${stack.url}/auth/api-key/create`, { name: 'examples' })
const { key, id: keyId } = await created.json() as { key: string, id: string }

interface Ran { stdout: string, stderr: string }
async function runExample (file: string, args: string[], env: Record<string, string>): Promise<Ran> {
  // No inherited environment: the example must need nothing but what the docs tell the reader to set.
  return run(file, args, { env: { PATH: '/usr/bin:/bin', GATEWAY_URL: stack.url, ...env }, timeout: 60_000 })
}

const askedBy = (from: number): Array<string | string[] | undefined> => rag.requests.slice(from).map((request) => request.headers['x-user-id'])

t.test('the Python client: login, ask, refresh (rotated), ask, logout (the token refused at once)', async (t) => {
  const from = rag.requests.length
  const { stdout } = await runExample('/usr/bin/python3', [example('rag_client.py'), 'What is a zero-moment point?'], { GATEWAY_EMAIL: reader.email, GATEWAY_PASSWORD: PASSWORD })
  const steps = stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>)
  t.same(steps.map((step) => step.step), ['login', 'ask', 'refresh', 'ask', 'logout'])
  t.equal(steps[0].user, reader.userId)
  t.match(steps[1].answer, { answer: 'ok' })
  t.equal(steps[2].rotated, true)
  t.equal(steps[4].refused, true)
  t.same(askedBy(from), [reader.userId, reader.userId], 'the RAG service heard the reader twice')
  t.same(JSON.parse(rag.requests.at(-1)?.body ?? '{}'), { question: 'What is a zero-moment point?' })
})

t.test('the Python client with an API key', async (t) => {
  const from = rag.requests.length
  const { stdout } = await runExample('/usr/bin/python3', [example('rag_client.py'), 'And a key?'], { GATEWAY_API_KEY: key })
  t.match(JSON.parse(stdout), { step: 'ask', answer: { answer: 'ok' } })
  t.same(askedBy(from), [reader.userId])
  t.equal(rag.requests.at(-1)?.headers['x-api-key-id'], keyId)
})

t.test('the Python client reports a refusal as the gateway\'s error, exit 1', async (t) => {
  const failed = await runExample('/usr/bin/python3', [example('rag_client.py')], { GATEWAY_API_KEY: 'agk_unknown' }).then(() => null, (err: Error & Ran & { code: number }) => err)
  t.equal(failed?.code, 1)
  t.same(JSON.parse(failed?.stderr ?? '{}'), { error: 'invalid_api_key', status: 401 })
})

t.test('the shell script: with a login (ask, refresh, ask, logout) and with an API key', async (t) => {
  const from = rag.requests.length
  const { stdout } = await runExample(example('ask-rag.sh'), ['Why "quotes"?'], { GATEWAY_EMAIL: reader.email, GATEWAY_PASSWORD: PASSWORD })
  t.same(stdout.trim().split('\n').map((line) => (JSON.parse(line) as { answer: string }).answer), ['ok', 'ok'])
  t.same(askedBy(from), [reader.userId, reader.userId])
  t.same(JSON.parse(rag.requests.at(-1)?.body ?? '{}'), { question: 'Why "quotes"?' }, 'the question arrives as sent')
  const { rows } = await stack.pool.query<{ ended: number }>('SELECT count(*)::int AS ended FROM token_family WHERE user_id = $1 AND revoked_reason = \'logout\'', [reader.userId])
  t.ok(rows[0].ended >= 2, 'both scripts\' logins ended by their logout')

  const withKey = await runExample(example('ask-rag.sh'), ['With a key'], { GATEWAY_API_KEY: key })
  t.match(JSON.parse(withKey.stdout), { answer: 'ok' })
  t.equal(rag.requests.at(-1)?.headers['x-api-key-id'], keyId)
})
