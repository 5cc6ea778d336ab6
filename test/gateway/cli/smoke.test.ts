import t from 'tap'
import { runScript } from '../../cli.ts'
import type { ScriptRun } from '../../cli.ts'
import { startTestStack, TEST_ORIGIN, testDatabase, uniqueEmail } from '../../helper.ts'
import { freePort } from '../../ports.ts'
import { spawnService } from '../../processes.ts'
import { tempDir } from '../../temp-dir.ts'

const PASSWORD = 'correct horse battery'

async function smoke (args: string[]): Promise<ScriptRun> {
  return runScript('gateway/cli/smoke.ts', args)
}

interface Report {
  ok: boolean
  failedStep: string | null
  steps: Array<{ step: string, ok: boolean, ms: number, detail: string }>
}

const STEPS = ['health', 'sign-up', 'sign-in', 'get-session', 'jwt', 'bearer', 'sign-out', 'session-gone']

t.test('the smoke checker passes against a running stack, again for an existing user, and names the failing step', async (t) => {
  const stack = await startTestStack(t, { AUTH_RATE_LIMIT_MAX: '100', AUTH_USER_FIELDS: 'tier:string' })
  const email = uniqueEmail('smoke')
  const base = ['--base-url', stack.url, '--email', email, '--password', PASSWORD, '--origin', TEST_ORIGIN]

  const first = await smoke([...base, '--name', 'Smoke Reader', '--custom-fields', '{"tier":"free"}'])
  t.equal(first.code, 0, first.stdout + first.stderr)
  const lines = first.stdout.trim().split('\n')
  for (const step of STEPS) {
    t.ok(lines.some((line) => new RegExp(`^✓ ${step}\\s+\\d+ ms`).test(line)), `a ✓ line with timing for ${step}`)
  }
  t.match(first.stdout, /user created/)
  const { rows } = await stack.pool.query<{ name: string, tier: string }>('SELECT name, tier FROM "user" WHERE email = $1', [email])
  t.same(rows, [{ name: 'Smoke Reader', tier: 'free' }], 'name and custom fields sent at sign-up')

  const again = await smoke([...base, '--json'])
  t.equal(again.code, 0, again.stdout + again.stderr)
  const report = JSON.parse(again.stdout) as Report
  t.equal(report.ok, true)
  t.equal(report.failedStep, null)
  t.same(report.steps.map((s) => s.step), STEPS)
  t.ok(report.steps.every((s) => s.ok && typeof s.ms === 'number'))
  t.match(report.steps[1].detail, /exists/, 'an existing user is signed in instead')

  const wrongPassword = await smoke(['--base-url', stack.url, '--email', email, '--password', 'not the password', '--origin', TEST_ORIGIN])
  t.equal(wrongPassword.code, 1)
  t.match(wrongPassword.stdout, /✗ sign-in/)
  t.match(wrongPassword.stdout, /FAILED at step "sign-in"/)

  await stack.authCore.close()
  const [down, plain] = await Promise.all([smoke([...base, '--json']), smoke(base)])
  t.equal(down.code, 1, 'exit 1 when auth-core is down')
  const downReport = JSON.parse(down.stdout) as Report
  t.equal(downReport.ok, false)
  t.equal(downReport.failedStep, 'sign-up', 'names the failing step')
  t.match(downReport.steps.at(-1)?.detail ?? '', /503/)
  t.equal(downReport.steps[0].ok, true, 'the gateway itself is still healthy')
  t.equal(plain.code, 1)
  t.match(plain.stdout, /^✗ sign-up\s+\d+ ms/m)
})

t.test('bad or missing arguments print the usage and exit 2', async (t) => {
  const cases: Array<[string, string[], RegExp]> = [
    ['no arguments', [], /--base-url is required/],
    ['missing password', ['--base-url', 'http://127.0.0.1:1', '--email', 'a@example.com'], /--password is required/],
    ['bad URL', ['--base-url', 'not a url', '--email', 'a@example.com', '--password', PASSWORD], /--base-url must be/],
    ['bad custom fields', ['--base-url', 'http://127.0.0.1:1', '--email', 'a@example.com', '--password', PASSWORD, '--custom-fields', '[1]'], /--custom-fields must be a JSON object/],
    ['unknown option', ['--base-url', 'http://127.0.0.1:1', '--bogus'], /Unknown option/]
  ]
  // Separate processes that share nothing: run side by side.
  const [help, ...runs] = await Promise.all([smoke(['--help']), ...cases.map(([, args]) => smoke(args))])
  for (const [i, [name, , message]] of cases.entries()) {
    t.equal(runs[i].code, 2, `${name}: exit 2`)
    t.match(runs[i].stderr, message, `${name}: says what is wrong`)
    t.match(runs[i].stderr, /Usage: npm run smoke/, `${name}: usage`)
  }
  t.equal(help.code, 0)
  t.match(help.stdout, /Usage: npm run smoke/)
})

t.test('an unreachable gateway fails at the health step', async (t) => {
  const run = await smoke(['--base-url', 'http://127.0.0.1:1', '--email', 'a@example.com', '--password', PASSWORD, '--timeout', '2000'])
  t.equal(run.code, 1)
  t.match(run.stdout, /✗ health/)
  t.match(run.stdout, /FAILED at step "health"/)
})

t.test('`npm start` prints one URL, and the smoke checker passes on it and on any address the gateway answers on, with no --origin', async (t) => {
  const port = await freePort()
  const authCorePort = await freePort()
  const started = spawnService(t, 'npm start', 'gateway/cli/start.ts', {
    DATABASE_URL: await testDatabase(t),
    DATA_DIR: tempDir(t),
    PORT: String(port),
    AUTH_CORE_PORT: String(authCorePort),
    LOG_LEVEL: 'warn'
  }, `http://127.0.0.1:${port}`)
  const printed = await new Promise<string>((resolve, reject) => {
    started.child.stdout?.on('data', () => {
      const line = /auth-gateway ready on (\S+)/.exec(started.output())
      if (line !== null) resolve(line[1])
    })
    started.child.once('exit', (code) => { reject(new Error(`npm start exited (${String(code)}): ${started.output()}`)) })
  })
  t.equal(printed, `http://localhost:${port}`, 'the URL printed is PUBLIC_URL, which follows PORT')
  t.equal(started.output().match(/https?:\/\/[^\s,)]+/g)?.filter((url) => !url.endsWith('/auth')).length, 1, 'one URL, besides its /auth')

  // The printed URL, then the address the process listens on: the origin sent is PUBLIC_URL's either way.
  for (const baseUrl of [printed, `http://127.0.0.1:${port}`]) {
    const run = await smoke(['--base-url', baseUrl, '--email', uniqueEmail('smoke-start'), '--password', PASSWORD])
    t.equal(run.code, 0, `${baseUrl}: ${run.stdout}${run.stderr}`)
    t.match(run.stdout, new RegExp(`✓ health .*public URL http://localhost:${port}`), `${baseUrl}: health names the public URL`)
  }
  // An origin the gateway does not trust is still refused: the default is PUBLIC_URL's, not "anything".
  const foreign = await smoke(['--base-url', printed, '--email', uniqueEmail('smoke-start'), '--password', PASSWORD, '--origin', 'http://evil.example'])
  t.equal(foreign.code, 1)
  t.match(foreign.stdout, /✗ sign-up .*403/)
})
