import t from 'tap'
import type { Test } from 'tap'
import { decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose'
import { EdDsaSigner, IDENTITY_TOKEN_TYPE } from '../../../shared/jwt.ts'
import { rotateSigningKeys } from '../../../shared/signing-keys.ts'
import { ConfigError } from '../../../shared/config.ts'
import type { Env } from '../../../shared/config.ts'
import { gatewayOn, JWT_TEST_SECRET, listenOn, SECRET, testConfig, verifyIdentityToken } from '../../helper.ts'
import type { Teardown } from '../../helper.ts'
import { askRag, lastBearer, stackWithUpstreams } from '../../upstream.ts'
import { bearer, issueToken, signUp, validate } from '../../readers.ts'
import type { Stack } from '../../../gateway/cli/stack.ts'

/*
 * Finding: the identity token sent to an upstream was signed with JWT_SECRET, so the upstream could
 * replay it to the gateway as the user (profile, export, a fresh 7-day token). Identity tokens are now
 * audience-bound and signed with keys no client token uses.
 */

const RAG_SECRET = 'rag-upstream-own-secret-of-32-characters!'
const APP_SECRET = 'app-upstream-own-secret-of-32-characters!'

// One stack for the file (recording RAG and app upstreams); key rotation and JWT_ALG=EdDSA, which
// change the stored keys or auth-core's own configuration, start their own.
const shared = await stackWithUpstreams(t)

type Gateway = Pick<Stack, 'url' | 'authCoreUrl'>

/** A gateway of its own on the shared stack, with the upstream settings of `env`, in front of the shared upstreams. */
async function gatewayWith (t: Teardown, env: Env): Promise<Gateway> {
  const url = await listenOn(await gatewayOn(t, shared.stack, { RAG_UPSTREAM_URL: shared.rag.url, APP_UPSTREAM_URL: shared.app.url, ...env }))
  return { url, authCoreUrl: shared.stack.authCoreUrl }
}

/** What an upstream holding `token` can do at the gateway: every answer must refuse it. */
async function replay (t: Test, stack: Gateway, token: string, label: string): Promise<void> {
  const headers = bearer(token)
  t.equal((await fetch(`${stack.url}/api/v1/profile`, { headers })).status, 401, `${label}: profile read refused`)
  t.equal((await fetch(`${stack.url}/api/v1/profile/export`, { headers })).status, 401, `${label}: export refused`)
  const write = await fetch(`${stack.url}/api/v1/profile`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: '{"interestArea":"x","consentGiven":true}' })
  t.equal(write.status, 401, `${label}: profile write refused`)
  const minted = await fetch(`${stack.url}/auth/jwt`, { headers })
  t.equal(minted.status, 401, `${label}: no client token minted from it`)
  t.equal((await minted.json() as { error: string }).error, 'invalid_token')
  t.same((await validate(stack.url, headers)).body, { user: null }, `${label}: gateway validate-session says no user`)
  t.same((await validate(stack.authCoreUrl, headers)).body, { user: null }, `${label}: auth-core validate-session says no user`)
  t.equal((await fetch(`${stack.url}/api/private`, { headers })).status, 401, `${label}: the app upstream is not reachable with it`)
}

t.test('EdDSA identity tokens (the default): audience-bound, published keys, never a client bearer', async (t) => {
  const { stack, rag, app } = shared
  const reader = await signUp(stack)
  t.equal(await askRag(stack, reader.cookie), 200)
  const ragToken = lastBearer(rag)
  const header = decodeProtectedHeader(ragToken)
  t.equal(header.alg, 'EdDSA')
  t.equal(header.typ, IDENTITY_TOKEN_TYPE)
  t.type(header.kid, 'string')

  const jwksResponse = await fetch(`${stack.url}/auth/jwks`)
  t.equal(jwksResponse.status, 200, 'the JWKS is public')
  t.match(jwksResponse.headers.get('cache-control'), /max-age=\d+/)
  const jwks = await jwksResponse.json() as { keys: Array<Record<string, unknown>> }
  t.ok(jwks.keys.some((key) => key.kid === header.kid && key.kty === 'OKP' && key.crv === 'Ed25519'), 'the signing key is published')
  t.ok(jwks.keys.every((key) => key.d === undefined), 'no private part is published')

  const { payload } = await verifyIdentityToken(stack.url, ragToken, 'rag')
  t.equal(payload.sub, reader.userId)
  t.equal(payload.email, reader.email)
  t.ok((payload.exp ?? 0) - (payload.iat ?? 0) <= 300, 'minutes of life')
  await t.rejects(verifyIdentityToken(stack.url, ragToken, 'app'), 'the RAG token is not valid for the app upstream')

  t.equal((await fetch(`${stack.url}/api/private`, { headers: { cookie: reader.cookie } })).status, 200)
  const appToken = lastBearer(app)
  t.equal(decodeJwt(appToken).aud, 'app')
  await t.rejects(verifyIdentityToken(stack.url, appToken, 'rag'), 'the app token is not valid for the RAG upstream')

  await replay(t, stack, ragToken, 'RAG identity token')
  await replay(t, stack, appToken, 'app identity token')
  t.equal((await fetch(`${stack.url}/api/v1/profile`, { headers: { cookie: reader.cookie } })).status, 200, 'the reader\'s own session still works')
})

t.test('an upstream with its own HS256 secret: PyJWT-style verification with that secret, no aud, no replay', async (t) => {
  const { rag, app } = shared
  const stack = await gatewayWith(t, { RAG_UPSTREAM_JWT_SECRET: RAG_SECRET, APP_UPSTREAM_JWT_SECRET: APP_SECRET })
  const reader = await signUp(stack)
  t.equal(await askRag(stack, reader.cookie), 200)
  const ragToken = lastBearer(rag)
  const { payload, protectedHeader } = await jwtVerify(ragToken, new TextEncoder().encode(RAG_SECRET), { issuer: 'better-auth', algorithms: ['HS256'] })
  t.equal(protectedHeader.alg, 'HS256')
  t.equal(payload.sub, reader.userId)
  t.equal(payload.aud, undefined, 'no aud: PyJWT without an audience would refuse one')
  await t.rejects(jwtVerify(ragToken, new TextEncoder().encode(JWT_TEST_SECRET), { algorithms: ['HS256'] }), 'not signed with JWT_SECRET')
  await t.rejects(jwtVerify(ragToken, new TextEncoder().encode(APP_SECRET), { algorithms: ['HS256'] }), 'not valid at the app upstream')
  await replay(t, stack, ragToken, 'HS256 RAG identity token')

  t.equal((await fetch(`${stack.url}/api/private`, { headers: { cookie: reader.cookie } })).status, 200)
  await t.resolves(jwtVerify(lastBearer(app), new TextEncoder().encode(APP_SECRET), { issuer: 'better-auth', algorithms: ['HS256'] }))
})

t.test('an upstream can never be handed JWT_SECRET, BETTER_AUTH_SECRET or another upstream\'s key', async (t) => {
  for (const [env, named] of [
    [{ RAG_UPSTREAM_JWT_SECRET: JWT_TEST_SECRET }, 'RAG_UPSTREAM_JWT_SECRET'],
    [{ APP_UPSTREAM_JWT_SECRET: SECRET }, 'APP_UPSTREAM_JWT_SECRET'],
    [{ RAG_UPSTREAM_JWT_SECRET: RAG_SECRET, APP_UPSTREAM_JWT_SECRET: RAG_SECRET }, 'APP_UPSTREAM_JWT_SECRET'],
    [{ RAG_UPSTREAM_JWT_SECRET: 'short' }, 'RAG_UPSTREAM_JWT_SECRET'],
    [{ RAG_UPSTREAM_SUBJECT: 'anonymous' }, 'RAG_UPSTREAM_SUBJECT'],
    [{ JWT_ALG: 'RS256' }, 'JWT_ALG']
  ] as const) {
    let refused: unknown
    try {
      testConfig(t, env)
    } catch (err) {
      refused = err
    }
    t.ok(refused instanceof ConfigError && refused.variable === named, `${Object.keys(env).join(', ')} refused, naming ${named}`)
  }
})

t.test('pseudonymous subjects: stable per user and upstream, unlinkable across upstreams, no email or name', async (t) => {
  const { rag, app } = shared
  const stack = await gatewayWith(t, { RAG_UPSTREAM_SUBJECT: 'pseudonymous', APP_UPSTREAM_SUBJECT: 'pseudonymous' })
  const reader = await signUp(stack)
  const other = await signUp(stack)
  t.equal(await askRag(stack, reader.cookie), 200)
  const first = (await verifyIdentityToken(stack.url, lastBearer(rag), 'rag')).payload
  const firstUserId = rag.requests.at(-1)?.headers['x-user-id']
  t.not(first.sub, reader.userId, 'the account id is not sent')
  t.equal(firstUserId, first.sub, 'X-User-Id is the pseudonym')
  t.equal(first.email, undefined, 'no email')
  t.equal(first.name, undefined, 'no name')

  t.equal(await askRag(stack, reader.cookie), 200)
  t.equal(rag.requests.at(-1)?.headers['x-user-id'], first.sub, 'stable for the same user')
  t.equal(await askRag(stack, other.cookie), 200)
  t.not(rag.requests.at(-1)?.headers['x-user-id'], first.sub, 'another user, another pseudonym')

  t.equal((await fetch(`${stack.url}/api/private`, { headers: { cookie: reader.cookie } })).status, 200)
  const atApp = (await verifyIdentityToken(stack.url, lastBearer(app), 'app')).payload
  t.not(atApp.sub, first.sub, 'the app upstream sees another pseudonym: logs cannot be joined')
  t.not(atApp.sub, reader.userId)
})

t.test('key rotation: new tokens under the new key, the old key published through the overlap', async (t) => {
  const { stack, rag } = await stackWithUpstreams(t)
  const reader = await signUp(stack)
  t.equal(await askRag(stack, reader.cookie), 200)
  const before = lastBearer(rag)
  const oldKid = decodeProtectedHeader(before).kid

  const report = await rotateSigningKeys(stack.pool, stack.config.jwtSecret)
  t.equal(report.created.length, 1)
  t.same(report.retiring.map((key) => key.kid), [oldKid], 'the key in service starts its overlap window')
  await stack.gateway.keyRing.reload()
  const published = ((await (await fetch(`${stack.url}/auth/jwks`)).json()) as { keys: Array<{ kid: string }> }).keys.map((key) => key.kid)
  t.ok(published.includes(report.created[0].kid), 'the new key is published at once')

  const second = await signUp(stack)
  t.equal(await askRag(stack, second.cookie), 200)
  t.equal(decodeProtectedHeader(lastBearer(rag)).kid, oldKid, 'until every replica and upstream can know it, the old key signs')

  // Published long enough: the new key signs.
  await stack.pool.query("UPDATE signing_key SET created_at = now() - interval '5 minutes' WHERE kid = $1", [report.created[0].kid])
  await stack.gateway.keyRing.reload()
  const third = await signUp(stack)
  t.equal(await askRag(stack, third.cookie), 200)
  const after = lastBearer(rag)
  t.equal(decodeProtectedHeader(after).kid, report.created[0].kid, 'new tokens are signed with the new key')
  await t.resolves(verifyIdentityToken(stack.url, before, 'rag'), 'a token of the old key still verifies in the overlap')
  await t.resolves(verifyIdentityToken(stack.url, after, 'rag'))

  await stack.pool.query("UPDATE signing_key SET retires_at = now() - interval '1 second' WHERE kid = $1", [oldKid])
  await stack.gateway.keyRing.reload()
  const kids = ((await (await fetch(`${stack.url}/auth/jwks`)).json()) as { keys: Array<{ kid: string }> }).keys.map((key) => key.kid)
  t.notOk(kids.includes(String(oldKid)), 'after the overlap the old key is no longer published')
  const cleaned = await rotateSigningKeys(stack.pool, stack.config.jwtSecret)
  t.equal(cleaned.deleted, 1, 'a later rotation deletes it')
})

t.test('JWT_ALG=EdDSA: client tokens from the JWKS, accepted as bearer; identity keys never are', async (t) => {
  const { stack, rag } = await stackWithUpstreams(t, { JWT_ALG: 'EdDSA' })
  const reader = await signUp(stack)
  const { token } = await issueToken(stack, reader)
  const header = decodeProtectedHeader(token)
  t.equal(header.alg, 'EdDSA')
  const keys = ((await (await fetch(`${stack.url}/auth/jwks`)).json()) as { keys: Array<{ kid: string }> }).keys
  t.ok(keys.some((key) => key.kid === header.kid), 'the client key is published')
  t.equal(decodeJwt(token).aud, undefined, 'client tokens carry no audience')
  t.equal((await fetch(`${stack.url}/api/v1/profile`, { headers: bearer(token) })).status, 200, 'accepted as a bearer')
  t.equal((await validate(stack.authCoreUrl, bearer(token))).body.user?.id, reader.userId, 'auth-core verifies it too')

  t.equal(await askRag(stack, reader.cookie), 200)
  const identity = lastBearer(rag)
  t.not(decodeProtectedHeader(identity).kid, header.kid, 'identity tokens use another key')
  await replay(t, stack, identity, 'EdDSA identity token')

  // Even without an audience, a token under an identity key is no client token.
  const forged = await new EdDsaSigner(stack.gateway.keyRing, 'identity').sign(reader.userId, { email: reader.email, name: 'x' }, 300)
  t.equal((await fetch(`${stack.url}/auth/jwt`, { headers: bearer(forged.token) })).status, 401, 'an identity key signs no client token')
  t.same((await validate(stack.authCoreUrl, bearer(forged.token))).body, { user: null })
})

t.test('the first start creates one identity key, and stores its private part sealed', async (t) => {
  // The shared stack: its gateway started first, the other gateways on its database since reuse the key.
  const { stack, rag } = shared
  const reader = await signUp(stack)
  t.equal(await askRag(stack, reader.cookie), 200)
  const kid = decodeProtectedHeader(lastBearer(rag)).kid
  const { rows } = await stack.pool.query<{ n: string }>("SELECT count(*) AS n FROM signing_key WHERE purpose = 'identity'")
  t.equal(rows[0].n, '1', 'one identity key, created on first start')
  const sealed = await stack.pool.query<{ sealed: string }>('SELECT sealed_private_jwk AS sealed FROM signing_key WHERE kid = $1', [kid])
  t.notMatch(sealed.rows[0].sealed, /"d"/, 'the private key is stored sealed, not as a readable JWK')
})
