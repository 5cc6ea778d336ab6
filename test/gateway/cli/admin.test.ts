import t from 'tap'
import { postJson, startTestStack, tempDir, TEST_ORIGIN, uniqueEmail } from '../../helper.ts'
import { setRole } from '../../../gateway/cli/admin-commands.ts'

/*
 * `npm run admin -- set-role` on the embedded database of `npm start` (no DATABASE_URL), called
 * in-process on the stack's own embedded database. (The command as a process, on a Postgres server:
 * test/gateway/routes/admin.test.ts.)
 */

t.test('set-role on the embedded database', async (t) => {
  const stack = await startTestStack(t, { DATA_DIR: tempDir(t) }, { embedded: true })
  const email = uniqueEmail('embedded-admin')
  t.equal((await postJson(fetch, `${stack.url}/auth/sign-up/email`, { email, password: 'correct horse battery', name: 'First Admin' }, { origin: TEST_ORIGIN })).status, 200)
  const cookie = (await postJson(fetch, `${stack.url}/auth/sign-in/email`, { email, password: 'correct horse battery' }, { origin: TEST_ORIGIN })).headers.getSetCookie()[0].split(';')[0]
  await setRole(stack.config, stack.pool, email.toUpperCase(), 'admin')
  const { rows } = await stack.pool.query<{ role: string }>('SELECT role FROM "user" WHERE email = $1', [email])
  t.same(rows, [{ role: 'admin' }], 'stored, the address matched whatever its case')
  t.equal((await stack.gateway.inject({ method: 'GET', url: '/api/v1/profile', headers: { cookie } })).statusCode, 401, 'the session with the old role ended')
})
