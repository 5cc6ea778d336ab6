import t from 'tap'
import { decodeJwt } from 'jose'
import { gatewayOn, listenOn, postJson, TEST_ORIGIN } from '../../helper.ts'
import { signUp } from '../../readers.ts'
import { lastBearer, stackWithUpstreams } from '../../upstream.ts'

/*
 * A new consent policy (`CONSENT_VERSION` raised): profiles consented under the old one keep their
 * fields, stop travelling upstream, and say that consent is needed again, until the reader gives it.
 * The stack runs policy `1`; a second gateway on the same database runs policy `2`.
 */

const { stack, rag } = await stackWithUpstreams(t, { CONSENT_VERSION: '1' })
const newPolicy = await gatewayOn(t, stack, { CONSENT_VERSION: '2', RAG_UPSTREAM_URL: rag.url })
const newPolicyUrl = await listenOn(newPolicy)

const claimsVia = async (base: string, cookie: string): Promise<Record<string, unknown>> => {
  const answer = await fetch(`${base}/api/v1/query`, { method: 'POST', headers: { cookie, 'content-type': 'application/json' }, body: '{"q":"x"}' })
  t.equal(answer.status, 200)
  return decodeJwt(lastBearer(rag))
}

t.test('consent under an older policy: kept, not sent, re-consent asked for', async (t) => {
  const reader = await signUp(stack)
  const saved = await postJson(fetch, `${stack.url}/api/v1/profile`, { softwareBackground: 'Rust', consentGiven: true }, { cookie: reader.cookie, origin: TEST_ORIGIN })
  t.match(await saved.json(), { consentVersion: '1', reconsentRequired: false }, 'consented under policy 1')
  t.equal((await claimsVia(stack.url, reader.cookie)).softwareBackground, 'Rust', 'sent under policy 1')

  const read = await (await fetch(`${newPolicyUrl}/api/v1/profile`, { headers: { cookie: reader.cookie } })).json()
  t.match(read, { softwareBackground: 'Rust', consentGiven: true, consentVersion: '1', reconsentRequired: true }, 'under policy 2 the fields are kept and re-consent is asked for')
  const claims = await claimsVia(newPolicyUrl, reader.cookie)
  t.equal(claims.softwareBackground, undefined, 'and not sent upstream')
  t.equal(claims.consentVersion, undefined)

  const again = await postJson(fetch, `${newPolicyUrl}/api/v1/profile`, { consentGiven: true }, { cookie: reader.cookie, origin: TEST_ORIGIN })
  t.match(await again.json(), { softwareBackground: 'Rust', consentVersion: '2', reconsentRequired: false }, 'consent given again, under policy 2')
  t.match(await claimsVia(newPolicyUrl, reader.cookie), { softwareBackground: 'Rust', consentVersion: '2' }, 'sent again')
  const exported = await (await fetch(`${newPolicyUrl}/api/v1/profile/export`, { headers: { cookie: reader.cookie } })).json() as { consentLog: Array<{ action: string, policyVersion: string }> }
  t.same(exported.consentLog.map((entry) => [entry.action, entry.policyVersion]), [['grant', '1'], ['grant', '2']], 'both grants are in the log')
})

t.test('a profile without consent never asks for re-consent', async (t) => {
  const reader = await signUp(stack)
  const read = await (await fetch(`${newPolicyUrl}/api/v1/profile`, { headers: { cookie: reader.cookie } })).json()
  t.match(read, { consentGiven: false, reconsentRequired: false })
})
