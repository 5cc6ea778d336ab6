import t from 'tap'
import { buildGateway } from '../../../gateway/app.ts'
import type { Stack } from '../../../gateway/cli/stack.ts'
import type { Identity } from '../../../gateway/identity/identity-resolver.ts'
import { createProfileRepository } from '../../../gateway/repositories/profile-repository.ts'
import { profileClaimProvider } from '../../../gateway/routes/profile/consented-claims.ts'
import type { TokenClaims } from '../../../shared/jwt.ts'
import { cookieFetch, postJson, startTestStack, TEST_ORIGIN, uniqueEmail } from '../../helper.ts'
import type { Profile } from '../../../shared/profile.ts'

const PASSWORD = 'correct horse battery'
const FOREIGN_ORIGIN = 'http://evil.example'
const CONSENT_MESSAGE = 'Consent must be given to store background information'
const FULL = { softwareBackground: 'TypeScript, Python', hardwareBackground: 'Raspberry Pi', interestArea: 'robotics', consentGiven: true }

// Several sign-ups per stack: the per-address sign-up limit would otherwise stop the tests.
const STACK_ENV = { AUTH_RATE_LIMIT_MAX: '100' }

interface Reader {
  browser: ReturnType<typeof cookieFetch>
  email: string
  userId: string
  /** The session cookie, for requests sent without the helper's default `Origin`. */
  cookie: string
}

type ProfileBody = Profile

interface ErrorBody { error: string, message: string }

const EMPTY = {
  softwareBackground: null,
  hardwareBackground: null,
  interestArea: null,
  consentGiven: false,
  consentAt: null,
  consentVersion: null,
  createdAt: null,
  updatedAt: null,
  reconsentRequired: false
}

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/

async function signUp (stack: Stack, name = 'Reader'): Promise<Reader> {
  const browser = cookieFetch()
  const email = uniqueEmail()
  const response = await postJson(browser, `${stack.url}/auth/signup`, { email, password: PASSWORD, name })
  if (response.status !== 200) throw new Error(`sign-up answered ${response.status}: ${await response.text()}`)
  const { user } = await response.json() as { user: { id: string } }
  const cookie = [...browser.cookies].map(([key, value]) => `${key}=${value}`).join('; ')
  return { browser, email, userId: user.id, cookie }
}

function profileUrl (stack: Stack, suffix = ''): string {
  return `${stack.url}/api/v1/profile${suffix}`
}

async function postProfile (reader: Reader, stack: Stack, body: unknown): Promise<Response> {
  return postJson(reader.browser, profileUrl(stack), body)
}

async function profileRows (stack: Stack, userId: string): Promise<Array<Record<string, unknown>>> {
  const { rows } = await stack.pool.query('SELECT * FROM profile WHERE user_id = $1', [userId])
  return rows
}

async function consentLog (stack: Stack, userId: string): Promise<Array<{ action: string, policy_version: string }>> {
  const { rows } = await stack.pool.query<{ action: string, policy_version: string }>(
    'SELECT action, policy_version FROM consent_log WHERE user_id = $1 ORDER BY id',
    [userId]
  )
  return rows
}

function fakeIdentity (userId: string): Identity {
  return { userId, email: 'x@example.com', name: 'X', user: { id: userId, email: 'x@example.com', name: 'X' }, session: null, via: 'cookie', claims: {} }
}

async function gatewayClaims (stack: Stack, userId: string): Promise<TokenClaims> {
  const claims: TokenClaims = {}
  for (const provider of stack.gateway.identityClaimProviders) Object.assign(claims, await provider(fakeIdentity(userId)))
  return claims
}

t.test('profile API end to end', async (t) => {
  const stack = await startTestStack(t, STACK_ENV)

  t.test('anonymous callers get 401 on every profile route', async (t) => {
    const requests: Array<[string, string, RequestInit]> = [
      ['GET', '', {}],
      ['POST', '', { method: 'POST', headers: { 'content-type': 'application/json', origin: TEST_ORIGIN }, body: JSON.stringify(FULL) }],
      ['DELETE', '', { method: 'DELETE', headers: { origin: TEST_ORIGIN } }],
      ['GET', '/export', {}]
    ]
    for (const [method, suffix, init] of requests) {
      const response = await fetch(profileUrl(stack, suffix), init)
      t.equal(response.status, 401, `${method} ${suffix || '/'}`)
      t.equal(((await response.json()) as ErrorBody).error, 'unauthorized')
      t.equal(response.headers.get('cache-control'), 'no-store', 'not cached either')
    }
  })

  t.test('a new reader has an empty profile', async (t) => {
    const reader = await signUp(stack)
    const response = await reader.browser(profileUrl(stack))
    t.equal(response.status, 200)
    t.equal(response.headers.get('cache-control'), 'no-store')
    t.same(await response.json(), EMPTY)
  })

  t.test('each background field alone, without consent, is refused and nothing is written', async (t) => {
    const fresh = await signUp(stack)
    const withConsent = await signUp(stack)
    t.equal((await postProfile(withConsent, stack, FULL)).status, 200)
    const before = await profileRows(stack, withConsent.userId)

    for (const field of ['softwareBackground', 'hardwareBackground', 'interestArea']) {
      for (const consent of [{}, { consentGiven: false }]) {
        for (const reader of [fresh, withConsent]) {
          const response = await postProfile(reader, stack, { [field]: 'something', ...consent })
          t.equal(response.status, 400, `${field} with ${JSON.stringify(consent)}`)
          t.equal(response.headers.get('cache-control'), 'no-store')
          t.same(await response.json(), { error: 'consent_required', message: CONSENT_MESSAGE, requestId: response.headers.get('x-request-id') })
        }
      }
    }
    t.same(await profileRows(stack, fresh.userId), [], 'no row was created')
    t.same(await profileRows(stack, withConsent.userId), before, 'the existing row is unchanged')
    t.same(await consentLog(stack, fresh.userId), [])
    t.equal((await consentLog(stack, withConsent.userId)).length, 1, 'only the first grant is logged')
  })

  t.test('strings are trimmed and an empty string is null', async (t) => {
    const reader = await signUp(stack)
    const blankWithoutConsent = await postProfile(reader, stack, { softwareBackground: '   ', interestArea: '' })
    t.equal(blankWithoutConsent.status, 200, 'blank values need no consent: they store nothing')
    const response = await postProfile(reader, stack, { softwareBackground: '  Rust  ', hardwareBackground: '', interestArea: null, consentGiven: true })
    t.equal(response.status, 200)
    const body = await response.json() as ProfileBody
    t.equal(body.softwareBackground, 'Rust')
    t.equal(body.hardwareBackground, null)
    t.equal(body.interestArea, null)
  })

  t.test('grant then withdraw: fields erased, two log entries in order, GET reflects it', async (t) => {
    const reader = await signUp(stack)
    const granted = await postProfile(reader, stack, FULL)
    t.equal(granted.status, 200)
    t.equal(granted.headers.get('cache-control'), 'no-store')
    const profile = await granted.json() as ProfileBody
    t.match(profile, { softwareBackground: FULL.softwareBackground, hardwareBackground: FULL.hardwareBackground, interestArea: FULL.interestArea, consentGiven: true, consentVersion: '1' })
    t.match(profile.consentAt, ISO)
    t.match(profile.createdAt, ISO)
    t.match(profile.updatedAt, ISO)
    t.same(await (await reader.browser(profileUrl(stack))).json(), profile, 'GET returns what POST stored')

    const again = await postProfile(reader, stack, { interestArea: 'embedded systems', consentGiven: true })
    const updated = await again.json() as ProfileBody
    t.equal(updated.interestArea, 'embedded systems')
    t.equal(updated.softwareBackground, FULL.softwareBackground, 'absent fields keep their value')
    t.equal(updated.consentAt, profile.consentAt, 'consent already given: not re-stamped')
    t.equal((await consentLog(stack, reader.userId)).length, 1, 'no second grant while consent holds')

    const cleared = await postProfile(reader, stack, { hardwareBackground: null })
    t.equal(cleared.status, 200, 'clearing a field needs no consent flag')
    t.equal(((await cleared.json()) as ProfileBody).hardwareBackground, null)

    const withdrawn = await postProfile(reader, stack, { consentGiven: false })
    t.equal(withdrawn.status, 200)
    const after = await withdrawn.json() as ProfileBody
    t.match(after, { softwareBackground: null, hardwareBackground: null, interestArea: null, consentGiven: false, consentAt: null, consentVersion: null })
    t.same(await (await reader.browser(profileUrl(stack))).json(), after)
    t.same(await consentLog(stack, reader.userId), [{ action: 'grant', policy_version: '1' }, { action: 'withdraw', policy_version: '1' }])

    const withdrawAgain = await postProfile(reader, stack, { consentGiven: false })
    t.equal(withdrawAgain.status, 200)
    t.equal((await consentLog(stack, reader.userId)).length, 2, 'withdrawing without consent logs nothing')
  })

  t.test('a grant under a new policy version is stamped and logged again', async (t) => {
    const reader = await signUp(stack)
    const profiles = createProfileRepository(stack.pool, '1')
    t.equal((await profiles.upsert(reader.userId, FULL, '1')).consentChange, 'grant')
    t.equal((await profiles.upsert(reader.userId, { consentGiven: true }, '1')).consentChange, null)
    const renewed = await profiles.upsert(reader.userId, { consentGiven: true }, '2')
    t.equal(renewed.consentChange, 'grant')
    t.equal(renewed.profile.consentVersion, '2')
    t.equal(renewed.profile.softwareBackground, FULL.softwareBackground)
    t.same(await consentLog(stack, reader.userId), [{ action: 'grant', policy_version: '1' }, { action: 'grant', policy_version: '2' }])
  })

  t.test('claim provider: profile claims only with consent, read fresh on every call', async (t) => {
    const reader = await signUp(stack)
    const provider = profileClaimProvider(createProfileRepository(stack.pool, '1'))
    const identity = fakeIdentity(reader.userId)
    t.same(await provider(identity), {}, 'no profile: no claims')
    t.same(await gatewayClaims(stack, reader.userId), {}, 'nor from the gateway\'s providers')

    await postProfile(reader, stack, { consentGiven: false })
    t.same(await provider(identity), {}, 'a profile without consent: no claims')

    await postProfile(reader, stack, FULL)
    const expected = { softwareBackground: FULL.softwareBackground, hardwareBackground: FULL.hardwareBackground, interestArea: FULL.interestArea, consentVersion: '1' }
    t.same(await provider(identity), expected)
    t.same(await gatewayClaims(stack, reader.userId), expected, 'the gateway registered the provider: its identity tokens carry the claims')

    await postProfile(reader, stack, { consentGiven: false })
    t.same(await provider(identity), {}, 'the very next call after withdrawal carries nothing')
    t.same(await gatewayClaims(stack, reader.userId), {})

    await postProfile(reader, stack, FULL)
    t.equal((await reader.browser(profileUrl(stack), { method: 'DELETE' })).status, 204)
    t.same(await provider(identity), {}, 'nothing after the profile is erased')
  })

  t.test('DELETE erases the row and logs a withdrawal when consent had been given', async (t) => {
    const reader = await signUp(stack)
    await postProfile(reader, stack, FULL)
    const deleted = await reader.browser(profileUrl(stack), { method: 'DELETE' })
    t.equal(deleted.status, 204)
    t.equal(deleted.headers.get('cache-control'), 'no-store')
    t.same(await profileRows(stack, reader.userId), [])
    t.same(await consentLog(stack, reader.userId), [{ action: 'grant', policy_version: '1' }, { action: 'withdraw', policy_version: '1' }])
    t.same(await (await reader.browser(profileUrl(stack))).json(), EMPTY)

    t.equal((await reader.browser(profileUrl(stack), { method: 'DELETE' })).status, 204, 'deleting nothing is fine')
    t.equal((await consentLog(stack, reader.userId)).length, 2, 'and logs nothing')

    const neverConsented = await signUp(stack)
    await postProfile(neverConsented, stack, { consentGiven: false })
    t.equal((await neverConsented.browser(profileUrl(stack), { method: 'DELETE' })).status, 204)
    t.same(await consentLog(stack, neverConsented.userId), [], 'no withdrawal without a grant')
  })

  t.test('deleting the user through auth-core removes the profile', async (t) => {
    const reader = await signUp(stack)
    t.equal((await postProfile(reader, stack, FULL)).status, 200)
    t.equal((await profileRows(stack, reader.userId)).length, 1)
    const response = await postJson(reader.browser, `${stack.url}/auth/delete-user`, { password: PASSWORD })
    t.equal(response.status, 200, await response.clone().text())
    t.same(await profileRows(stack, reader.userId), [], 'the row went with the user')
    const { rows } = await stack.pool.query('SELECT id FROM "user" WHERE id = $1', [reader.userId])
    t.same(rows, [])
  })

  t.test('ten concurrent POSTs leave exactly one row equal to one of the bodies', async (t) => {
    const reader = await signUp(stack)
    const bodies = Array.from({ length: 10 }, (_, i) => ({
      softwareBackground: `software ${i}`,
      hardwareBackground: `hardware ${i}`,
      interestArea: `interest ${i}`,
      consentGiven: true
    }))
    const responses = await Promise.all(bodies.map(async (body) => postProfile(reader, stack, body)))
    t.same(responses.map((r) => r.status), bodies.map(() => 200))
    const rows = await profileRows(stack, reader.userId)
    t.equal(rows.length, 1)
    const [row] = rows
    const stored = { softwareBackground: row.software_background, hardwareBackground: row.hardware_background, interestArea: row.interest_area, consentGiven: row.consent_given }
    t.ok(bodies.some((body) => JSON.stringify(body) === JSON.stringify(stored)), `one of the posted bodies: ${JSON.stringify(stored)}`)
    t.same(await consentLog(stack, reader.userId), [{ action: 'grant', policy_version: '1' }], 'one grant, not ten')
    t.same(await (await reader.browser(profileUrl(stack))).json(), { ...stored, consentAt: row.consent_at instanceof Date ? row.consent_at.toISOString() : null, consentVersion: '1', createdAt: (row.created_at as Date).toISOString(), updatedAt: (row.updated_at as Date).toISOString(), reconsentRequired: false })
  })

  t.test('bad input gets the right 4xx with { error, message }, never a 5xx, and writes nothing', async (t) => {
    const reader = await signUp(stack)
    const cases: Array<[string, string, string, number, RegExp?]> = [
      ['unknown field', JSON.stringify({ favouriteColour: 'blue' }), 'application/json', 400, /favouriteColour/],
      ['unknown field beside valid ones', JSON.stringify({ ...FULL, isAdmin: true }), 'application/json', 400, /isAdmin/],
      ['number instead of string', JSON.stringify({ softwareBackground: 5, consentGiven: true }), 'application/json', 400, /softwareBackground/],
      ['string instead of boolean', JSON.stringify({ consentGiven: 'true' }), 'application/json', 400, /consentGiven/],
      ['101-character value', JSON.stringify({ interestArea: 'x'.repeat(101), consentGiven: true }), 'application/json', 400, /interestArea/],
      ['NUL character', JSON.stringify({ interestArea: 'a\u0000b', consentGiven: true }), 'application/json', 400, /interestArea/],
      ['array body', JSON.stringify([FULL]), 'application/json', 400],
      ['JSON null body', 'null', 'application/json', 400],
      ['17 KiB body', JSON.stringify({ softwareBackground: 'x'.repeat(17 * 1024), consentGiven: true }), 'application/json', 413],
      ['text/plain body', JSON.stringify(FULL), 'text/plain', 415],
      ['form-encoded body', 'softwareBackground=x&consentGiven=true', 'application/x-www-form-urlencoded', 415],
      ['malformed JSON', '{"softwareBackground": ', 'application/json', 400],
      ['empty JSON body', '', 'application/json', 400]
    ]
    for (const [name, body, type, status, mentions] of cases) {
      const response = await reader.browser(profileUrl(stack), { method: 'POST', headers: { 'content-type': type }, body })
      t.equal(response.status, status, `${name}: ${status}`)
      const payload = await response.json() as ErrorBody
      t.type(payload.error, 'string', `${name}: error code`)
      t.type(payload.message, 'string', `${name}: message`)
      t.same(Object.keys(payload).sort(), ['error', 'message', 'requestId'], `${name}: nothing else in the body`)
      if (mentions !== undefined) t.match(payload.message, mentions, `${name}: the message names the field`)
      t.equal(response.headers.get('cache-control'), 'no-store', `${name}: not cached`)
    }
    t.same(await profileRows(stack, reader.userId), [], 'nothing was written')
    t.same(await consentLog(stack, reader.userId), [])

    const valid100 = await postProfile(reader, stack, { interestArea: 'y'.repeat(100), consentGiven: true })
    t.equal(valid100.status, 200, 'exactly 100 characters fits')
  })

  t.test('CSRF: cookie writes need an allowed Origin or Referer; bearer writes do not', async (t) => {
    const reader = await signUp(stack)
    const send = async (method: string, headers: Record<string, string>, body?: string): Promise<Response> =>
      fetch(profileUrl(stack), { method, headers: { cookie: reader.cookie, ...headers }, body })
    const json = JSON.stringify(FULL)

    const foreign = await send('POST', { 'content-type': 'application/json', origin: FOREIGN_ORIGIN }, json)
    t.equal(foreign.status, 403)
    t.same(await foreign.json(), { error: 'csrf_rejected', message: 'Cross-site request refused: the request must come from an allowed origin', requestId: foreign.headers.get('x-request-id') })
    const neither = await send('POST', { 'content-type': 'application/json' }, json)
    t.equal(neither.status, 403, 'neither Origin nor Referer')
    const foreignReferer = await send('POST', { 'content-type': 'application/json', referer: `${FOREIGN_ORIGIN}/x` }, json)
    t.equal(foreignReferer.status, 403, 'a foreign Referer')
    const invalidFirst = await send('POST', { 'content-type': 'application/json', origin: FOREIGN_ORIGIN }, JSON.stringify({ softwareBackground: 5 }))
    t.equal(invalidFirst.status, 403, 'the origin is checked before validation')
    const consentFirst = await send('POST', { 'content-type': 'application/json', origin: FOREIGN_ORIGIN }, JSON.stringify({ softwareBackground: 'x' }))
    t.equal(consentFirst.status, 403, 'and before the consent rule')
    const plain = await send('POST', { 'content-type': 'text/plain', origin: FOREIGN_ORIGIN }, json)
    t.equal(plain.status, 415, 'the same body as text/plain is not even parsed')
    t.equal(((await plain.json()) as ErrorBody).error, 'unsupported_media_type')
    t.same(await profileRows(stack, reader.userId), [], 'nothing was written')

    const byReferer = await send('POST', { 'content-type': 'application/json', referer: `${TEST_ORIGIN}/docs/intro` }, json)
    t.equal(byReferer.status, 200, 'an allowed Referer without Origin is accepted')
    const publicOrigin = await send('POST', { 'content-type': 'application/json', origin: new URL(stack.config.publicUrl).origin }, JSON.stringify({ interestArea: 'from the gateway origin', consentGiven: true }))
    t.equal(publicOrigin.status, 200, 'the gateway\'s own origin is allowed')

    const deleteForeign = await send('DELETE', { origin: FOREIGN_ORIGIN })
    t.equal(deleteForeign.status, 403)
    const deleteNeither = await send('DELETE', {})
    t.equal(deleteNeither.status, 403)
    t.equal((await profileRows(stack, reader.userId)).length, 1, 'the row survived the refused deletes')

    const { token } = await stack.gateway.clientTokens.signer.sign(reader.userId, { email: reader.email, name: 'Reader' }, 300)
    const bearer = await fetch(profileUrl(stack), { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ interestArea: 'by token', consentGiven: true }) })
    t.equal(bearer.status, 200, 'bearer writes need no Origin')
    t.equal(((await bearer.json()) as ProfileBody).interestArea, 'by token')
    const bearerDelete = await fetch(profileUrl(stack), { method: 'DELETE', headers: { authorization: `Bearer ${token}`, origin: FOREIGN_ORIGIN } })
    t.equal(bearerDelete.status, 204)
    t.same(await profileRows(stack, reader.userId), [])
  })

  t.test('two readers never see or change each other\'s profile', async (t) => {
    const ada = await signUp(stack, 'Ada')
    const bob = await signUp(stack, 'Bob')
    await postProfile(ada, stack, FULL)
    t.same(await (await bob.browser(profileUrl(stack))).json(), EMPTY, 'Bob sees an empty profile')
    const bobExport = await (await bob.browser(profileUrl(stack, '/export'))).json() as { profile: ProfileBody, consentLog: unknown[] }
    t.same(bobExport, { profile: EMPTY, consentLog: [] }, 'and an empty export')

    await postProfile(bob, stack, { softwareBackground: 'Go', consentGiven: true })
    t.equal(((await (await ada.browser(profileUrl(stack))).json()) as ProfileBody).softwareBackground, FULL.softwareBackground, 'Ada keeps hers')
    await postProfile(bob, stack, { consentGiven: false })
    t.equal(((await (await ada.browser(profileUrl(stack))).json()) as ProfileBody).consentGiven, true, 'Bob withdrawing does not touch Ada')
    t.equal((await bob.browser(profileUrl(stack), { method: 'DELETE' })).status, 204)
    t.equal((await profileRows(stack, ada.userId)).length, 1, 'Bob deleting does not touch Ada')
    t.equal((await consentLog(stack, ada.userId)).length, 1)
  })

  t.test('export returns the profile and the consent log in order, as an attachment', async (t) => {
    const reader = await signUp(stack)
    await postProfile(reader, stack, FULL)
    await postProfile(reader, stack, { consentGiven: false })
    await postProfile(reader, stack, { interestArea: 'compilers', consentGiven: true })

    const response = await reader.browser(profileUrl(stack, '/export'))
    t.equal(response.status, 200)
    t.equal(response.headers.get('content-disposition'), 'attachment; filename="profile-export.json"')
    t.equal(response.headers.get('cache-control'), 'no-store')
    t.match(response.headers.get('content-type') ?? '', /^application\/json/)
    const body = await response.json() as { profile: ProfileBody, consentLog: Array<{ action: string, policyVersion: string, at: string }> }
    t.same(body.profile, await (await reader.browser(profileUrl(stack))).json())
    t.same(body.consentLog.map((entry) => [entry.action, entry.policyVersion]), [['grant', '1'], ['withdraw', '1'], ['grant', '1']])
    for (const entry of body.consentLog) t.match(entry.at, ISO)
    const times = body.consentLog.map((entry) => Date.parse(entry.at))
    t.same(times, [...times].sort((a, b) => a - b), 'oldest first')
    t.equal(body.profile.consentAt, body.consentLog[2].at, 'the profile\'s consent time is the last grant')
  })

  t.test('consent changes are logged as events, without background values', async (t) => {
    const reader = await signUp(stack)
    const lines: string[] = []
    const app = await buildGateway(stack.config, { pool: stack.pool, logger: { level: 'info', stream: { write: (line: string) => { lines.push(line) } } } })
    t.teardown(() => app.close())
    const headers = { cookie: reader.cookie, origin: TEST_ORIGIN }
    const grant = await app.inject({ method: 'POST', url: '/api/v1/profile', headers, payload: FULL })
    t.equal(grant.statusCode, 200)
    const withdraw = await app.inject({ method: 'POST', url: '/api/v1/profile', headers, payload: { consentGiven: false } })
    t.equal(withdraw.statusCode, 200)
    const events = lines.map((line) => JSON.parse(line) as { event?: string, userId?: string }).filter((entry) => entry.event !== undefined)
    t.same(events.map((entry) => [entry.event, entry.userId]), [['consent_grant', reader.userId], ['consent_withdraw', reader.userId]])
    const all = lines.join('')
    for (const value of [FULL.softwareBackground, FULL.hardwareBackground, FULL.interestArea]) t.notOk(all.includes(value), `the log never holds ${value}`)
  })
})
