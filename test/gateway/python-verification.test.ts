import t from 'tap'
import { execFile } from 'node:child_process'
import { decodeProtectedHeader } from 'jose'
import { gatewayOn, JWT_TEST_SECRET, listenOn } from '../helper.ts'
import { askApp, askRag, lastBearer, stackWithUpstreams } from '../upstream.ts'
import { bearer, issueToken, signUp } from '../readers.ts'

/*
 * What a Python service writes to verify the gateway's tokens, run by Debian's PyJWT (python3-jwt,
 * python3-cryptography; `.ci/run` installs them): each check is the usual PyJWT code, unchanged.
 */

// Debian's interpreter, not the pyenv one first on PATH (which has no PyJWT).
const PYTHON = '/usr/bin/python3'
const RAG_SECRET = 'rag-upstream-own-secret-of-32-characters!'
const OTHER_SECRET = 'not-the-secret-of-at-least-thirty-two-chars'

interface PythonResult {
  ok: boolean
  claims?: Record<string, unknown>
  error?: string
  message?: string
}

/** The usual verification code, wrapped so it reports what `jwt.decode` returned or raised as JSON. */
function check (code: string): string {
  const body = code.trim().split('\n').map((line) => `    ${line}`).join('\n')
  return `import json, os, urllib.request
import jwt
token = os.environ["TOKEN"]
try:
${body}
    print(json.dumps({"ok": True, "claims": claims}))
except jwt.PyJWTError as err:
    print(json.dumps({"ok": False, "error": type(err).__name__, "message": str(err)}))
`
}

const CLIENT_TOKEN_CHECK = check(`
JWT_SECRET = os.environ["JWT_SECRET"]
claims = jwt.decode(token, JWT_SECRET, algorithms=["HS256"], issuer="better-auth")
`)

const UPSTREAM_SECRET_CHECK = check(`
RAG_UPSTREAM_JWT_SECRET = os.environ["RAG_UPSTREAM_JWT_SECRET"]
claims = jwt.decode(token, RAG_UPSTREAM_JWT_SECRET, algorithms=["HS256"], issuer="better-auth")
`)

const jwksSetCheck = (audience: 'rag' | 'app'): string => check(`
url = os.environ["JWKS_URL"]
jwks = jwt.PyJWKSet.from_dict(json.load(urllib.request.urlopen(url)))
key = jwks[jwt.get_unverified_header(token)["kid"]]
claims = jwt.decode(token, key.key, algorithms=["EdDSA"], audience="${audience}", issuer="better-auth")
`)

const jwksClientCheck = (audience: 'rag' | 'app'): string => check(`
url = os.environ["JWKS_URL"]
key = jwt.PyJWKClient(url).get_signing_key_from_jwt(token)
claims = jwt.decode(token, key.key, algorithms=["EdDSA"], audience="${audience}", issuer="better-auth")
`)

/**
 * Runs a check asynchronously: the gateway answering the JWKS request lives in this process, so a
 * synchronous spawn would block it. Tokens and secrets travel in the environment, never in argv; the
 * environment is otherwise minimal so no proxy variable or PYTHONPATH changes what is tested.
 */
async function runPython (script: string, vars: Record<string, string>): Promise<PythonResult> {
  const env = { PATH: '/usr/bin:/bin', LANG: 'C.UTF-8', ...vars }
  return new Promise((resolve, reject) => {
    execFile(PYTHON, ['-c', script], { env, timeout: 30_000 }, (err, stdout, stderr) => {
      if (err !== null) {
        reject(new Error(`${PYTHON} failed: ${err.message}\n${stderr}`))
        return
      }
      try {
        resolve(JSON.parse(stdout) as PythonResult)
      } catch {
        reject(new Error(`${PYTHON} printed no JSON result: ${stdout}\n${stderr}`))
      }
    })
  })
}

const probe = await new Promise<string | null>((resolve) => {
  execFile(PYTHON, ['-c', 'import jwt, cryptography'], { env: { PATH: '/usr/bin:/bin' } }, (err, _stdout, stderr) => {
    resolve(err === null ? null : `${err.message}\n${stderr}`)
  })
})

if (probe !== null) {
  // No skip: CI must run these, and `.ci/run` installs the packages.
  t.fail(`${PYTHON} cannot import jwt and cryptography: install python3-jwt python3-cryptography (as .ci/run does)\n${probe}`)
} else {
  // One stack for the file; the upstream's own secret is a gateway of its own on it.
  const shared = await stackWithUpstreams(t)

  t.test('client tokens: jwt.decode(token, JWT_SECRET, algorithms=["HS256"], issuer="better-auth")', async (t) => {
    const { stack } = shared
    const reader = await signUp(stack)
    const { token } = await issueToken(stack, reader)
    t.equal(decodeProtectedHeader(token).alg, 'HS256')

    const ok = await runPython(CLIENT_TOKEN_CHECK, { TOKEN: token, JWT_SECRET: JWT_TEST_SECRET })
    t.has(ok, { ok: true }, 'PyJWT accepts the client token with JWT_SECRET')
    t.equal(ok.claims?.sub, reader.userId, 'sub is the user id')
    t.equal(ok.claims?.email, reader.email, 'email claim')
    t.equal(ok.claims?.iss, 'better-auth')
    t.equal(ok.claims?.aud, undefined, 'no aud')

    const wrong = await runPython(CLIENT_TOKEN_CHECK, { TOKEN: token, JWT_SECRET: OTHER_SECRET })
    t.has(wrong, { ok: false, error: 'InvalidSignatureError' }, 'another secret: InvalidSignatureError')
  })

  t.test('identity tokens under the upstream\'s own secret: RAG_UPSTREAM_JWT_SECRET verifies, JWT_SECRET refuses', async (t) => {
    const { rag } = shared
    const stack = { url: await listenOn(await gatewayOn(t, shared.stack, { RAG_UPSTREAM_URL: rag.url, RAG_UPSTREAM_JWT_SECRET: RAG_SECRET })) }
    const reader = await signUp(stack)
    t.equal(await askRag(stack, reader.cookie), 200)
    const token = lastBearer(rag)
    t.equal(decodeProtectedHeader(token).alg, 'HS256')

    const ok = await runPython(UPSTREAM_SECRET_CHECK, { TOKEN: token, RAG_UPSTREAM_JWT_SECRET: RAG_SECRET })
    t.has(ok, { ok: true }, 'PyJWT accepts the identity token with RAG_UPSTREAM_JWT_SECRET')
    t.equal(ok.claims?.sub, reader.userId)
    t.equal(ok.claims?.email, reader.email)
    t.equal(ok.claims?.aud, undefined, 'no aud')

    const asClient = await runPython(CLIENT_TOKEN_CHECK, { TOKEN: token, JWT_SECRET: JWT_TEST_SECRET })
    t.has(asClient, { ok: false, error: 'InvalidSignatureError' }, 'the client-token code with JWT_SECRET refuses it')
    t.equal((await fetch(`${stack.url}/auth/jwt`, { headers: bearer(token) })).status, 401, 'the gateway refuses it as a bearer')
  })

  t.test('EdDSA identity tokens (the default): PyJWT with the keys of GET /auth/jwks', async (t) => {
    const { stack, rag, app } = shared
    const reader = await signUp(stack)
    const jwksUrl = `${stack.url}/auth/jwks`
    t.equal(await askRag(stack, reader.cookie), 200)
    const ragToken = lastBearer(rag)
    const header = decodeProtectedHeader(ragToken)
    t.equal(header.alg, 'EdDSA')
    t.type(header.kid, 'string')

    const set = await runPython(jwksSetCheck('rag'), { TOKEN: ragToken, JWKS_URL: jwksUrl })
    t.has(set, { ok: true }, 'PyJWKSet.from_dict + audience="rag" accepts the RAG token')
    t.equal(set.claims?.sub, reader.userId)
    t.equal(set.claims?.email, reader.email)
    t.equal(set.claims?.aud, 'rag')

    const client = await runPython(jwksClientCheck('rag'), { TOKEN: ragToken, JWKS_URL: jwksUrl })
    t.has(client, { ok: true }, 'PyJWKClient + audience="rag" accepts the RAG token')
    t.equal(client.claims?.sub, reader.userId)

    for (const [name, script] of [['PyJWKSet.from_dict', jwksSetCheck('app')], ['PyJWKClient', jwksClientCheck('app')]] as const) {
      const wrongAudience = await runPython(script, { TOKEN: ragToken, JWKS_URL: jwksUrl })
      t.has(wrongAudience, { ok: false, error: 'InvalidAudienceError' }, `${name} + audience="app" refuses the RAG token`)
    }

    const asClient = await runPython(CLIENT_TOKEN_CHECK, { TOKEN: ragToken, JWT_SECRET: JWT_TEST_SECRET })
    t.has(asClient, { ok: false, error: 'InvalidAlgorithmError' }, 'the client-token code with JWT_SECRET refuses it')
    t.equal((await fetch(`${stack.url}/auth/jwt`, { headers: bearer(ragToken) })).status, 401, 'the gateway refuses it as a bearer')

    t.equal(await askApp(stack, reader.cookie), 200)
    const appToken = lastBearer(app)
    const atApp = await runPython(jwksClientCheck('app'), { TOKEN: appToken, JWKS_URL: jwksUrl })
    t.has(atApp, { ok: true }, 'PyJWKClient + audience="app" accepts the app token')
    t.equal(atApp.claims?.aud, 'app')
    const appAtRag = await runPython(jwksSetCheck('rag'), { TOKEN: appToken, JWKS_URL: jwksUrl })
    t.has(appAtRag, { ok: false, error: 'InvalidAudienceError' }, 'audience="rag" refuses the app token')
  })
}
