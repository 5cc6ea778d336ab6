import t from 'tap'
import { runScript } from '../../cli.ts'
import type { ScriptRun } from '../../cli.ts'
import { JWT_TEST_SECRET, SECRET, startTestStack, tempDir } from '../../helper.ts'

async function keys (args: string[], env: Record<string, string>): Promise<ScriptRun> {
  return runScript('gateway/cli/keys.ts', args, env)
}

t.test('npm run keys -- rotate: a new key in service, the old one published through the overlap', async (t) => {
  const stack = await startTestStack(t)
  const env = { DATABASE_URL: stack.databaseUrl, JWT_SECRET: JWT_TEST_SECRET, BETTER_AUTH_SECRET: SECRET, DATA_DIR: tempDir(t) }
  const jwksKids = async (): Promise<string[]> => ((await (await fetch(`${stack.url}/auth/jwks`)).json()) as { keys: Array<{ kid: string }> }).keys.map((key) => key.kid)
  const [before] = await jwksKids()

  const rotated = await keys(['rotate', '--overlap', '2 hours'], env)
  t.equal(rotated.code, 0, rotated.stderr)
  const created = /^created identity key (\S+)$/m.exec(rotated.stdout)?.[1]
  t.ok(created, 'names the new key')
  t.match(rotated.stdout, new RegExp(`^retiring identity key ${before} at \\S+$`, 'm'), 'names the key it retires')

  const listed = await keys(['list'], env)
  t.equal(listed.code, 0, listed.stderr)
  t.match(listed.stdout, new RegExp(`^${created}  identity  created \\S+  in service$`, 'm'))
  t.match(listed.stdout, new RegExp(`^${before}  identity  created \\S+  retiring at \\S+$`, 'm'))

  await stack.gateway.keyRing.reload()
  t.same((await jwksKids()).sort(), [before, created].sort(), 'the gateway publishes both')

  const [bad, badOverlap] = await Promise.all([keys(['rotate', 'now'], env), keys(['rotate', '--overlap', 'soon'], env)])
  t.equal(bad.code, 2, 'unknown arguments: usage, exit 2')
  t.match(bad.stderr, /usage: npm run keys -- rotate/)
  t.equal(badOverlap.code, 1)
  t.match(badOverlap.stderr, /--overlap must be a positive duration/)
})
