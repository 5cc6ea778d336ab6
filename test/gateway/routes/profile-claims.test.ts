import t from 'tap'
import { decodeJwt } from 'jose'
import { cookieFetch, postJson, startTestStack, TEST_ORIGIN, uniqueEmail } from '../../helper.ts'
import { recordingUpstream } from '../../upstream.ts'

const PROFILE_CLAIMS = ['softwareBackground', 'hardwareBackground', 'interestArea', 'consentVersion']

t.test('consent travels with the data: profile claims reach the RAG upstream only while consent is given', async (t) => {
  const rag = await recordingUpstream(t)
  // A long cache: the claims must still follow every change at once.
  const stack = await startTestStack(t, { RAG_UPSTREAM_URL: rag.url, SESSION_CACHE_TTL: '1 hour', CONSENT_VERSION: '2024-09' })
  const browser = cookieFetch()
  await postJson(browser, `${stack.url}/auth/signup`, { email: uniqueEmail(), password: 'correct horse battery', name: 'Consenting Reader' })

  const claimsOfNextQuery = async (): Promise<Record<string, unknown>> => {
    const response = await postJson(browser, `${stack.url}/api/v1/query`, { q: 'what is ROS 2?' })
    t.equal(response.status, 200)
    const token = /^Bearer (.+)$/.exec(String(rag.requests.at(-1)?.headers.authorization))?.[1]
    t.ok(token, 'a signed-in call carries an identity token')
    return decodeJwt(token ?? '')
  }
  const profileClaims = (claims: Record<string, unknown>) => Object.fromEntries(PROFILE_CLAIMS.filter((k) => k in claims).map((k) => [k, claims[k]]))

  t.same(profileClaims(await claimsOfNextQuery()), {}, 'no profile, no claims')
  const tokenOfLastQuery = (): string => String(rag.requests.at(-1)?.headers.authorization)
  const first = tokenOfLastQuery()
  await claimsOfNextQuery()
  t.equal(tokenOfLastQuery(), first, 'while the claims hold, the same identity token is reused')

  const saved = await postJson(browser, `${stack.url}/api/v1/profile`, { softwareBackground: 'Python, ROS 2', hardwareBackground: 'Jetson Orin', interestArea: 'humanoids', consentGiven: true })
  t.equal(saved.status, 200)
  t.same(profileClaims(await claimsOfNextQuery()), {
    softwareBackground: 'Python, ROS 2',
    hardwareBackground: 'Jetson Orin',
    interestArea: 'humanoids',
    consentVersion: '2024-09'
  }, 'with consent, the profile travels')

  const updated = await postJson(browser, `${stack.url}/api/v1/profile`, { interestArea: 'locomotion', consentGiven: true })
  t.equal(updated.status, 200)
  t.equal((await claimsOfNextQuery()).interestArea, 'locomotion', 'an update is seen by the very next call')
  t.not(tokenOfLastQuery(), first, 'changed claims get a token of their own')

  const withdrawn = await postJson(browser, `${stack.url}/api/v1/profile`, { consentGiven: false })
  t.equal(withdrawn.status, 200)
  t.same(profileClaims(await claimsOfNextQuery()), {}, 'after withdrawal the very next call carries none')

  await postJson(browser, `${stack.url}/api/v1/profile`, { softwareBackground: 'C++', consentGiven: true })
  t.equal((await claimsOfNextQuery()).softwareBackground, 'C++')
  const deleted = await browser(`${stack.url}/api/v1/profile`, { method: 'DELETE', headers: { origin: TEST_ORIGIN } })
  t.equal(deleted.status, 204)
  t.same(profileClaims(await claimsOfNextQuery()), {}, 'after DELETE the very next call carries none')
})
