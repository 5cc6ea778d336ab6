import t from 'tap'
import { readFileSync } from 'node:fs'
import type { FastifyInstance } from 'fastify'
import { OPENAPI_DOC_PATH, openApiDocument } from '../../../gateway/cli/openapi.ts'
import { securityHeaders } from '../../../gateway/stages/hygiene.ts'
import { IMPERSONATION_PATHS } from '../../../auth-core/plugins/admin-policy/index.ts'
import { loadConfig } from '../../../shared/config.ts'
import { gatewayOn, JWT_TEST_SECRET, startTestStack, testDatabase } from '../../helper.ts'
import { recordingUpstream } from '../../upstream.ts'

interface Operation { responses?: Record<string, unknown>, tags?: string[], summary?: string, description?: string, 'x-access'?: string }
interface Document {
  openapi: string
  info: { title: string, version: string }
  paths: Record<string, Record<string, Operation>>
  components: { schemas: Record<string, unknown> }
}

/** Routes the document leaves out on purpose, and why. */
const EXCLUDED: ReadonlyMap<string, string> = new Map([
  ['/auth', 'the auth proxy\'s bare prefix: no better-auth endpoint'],
  ['/auth/', 'the same, with its slash'],
  ['/auth/admin', 'the admin proxy\'s bare prefix: no better-auth endpoint'],
  ['/auth/admin/', 'the same, with its slash'],
  ['/api/*', 'the app upstream\'s catch-all: its API is the upstream\'s'],
  ['*', 'CORS preflights']
])
/** Catch-alls documented by the better-auth paths below them. */
const DOCUMENTED_BELOW = ['/auth/*', '/auth/admin/*']

/**
 * Every (method, path) the gateway routes, read from `printRoutes()`'s radix tree (each node's text
 * continues its parent's). HEAD (answered by the GET route) and OPTIONS (CORS) are no operations.
 */
function registeredRoutes (app: FastifyInstance): Array<{ method: string, url: string }> {
  const routes: Array<{ method: string, url: string }> = []
  const stack: string[] = []
  for (const line of app.printRoutes().split('\n')) {
    const at = Math.max(line.indexOf('├── '), line.indexOf('└── '))
    if (at === -1) continue
    const depth = at / 4
    const [, segment, methods] = /^(.*?)(?: \(([A-Z, ]+)\))?$/.exec(line.slice(at + 4)) ?? []
    stack.length = depth
    stack.push(segment === '(empty root node)' ? '' : segment)
    if (methods === undefined) continue
    for (const method of methods.split(', ')) if (method !== 'HEAD' && method !== 'OPTIONS') routes.push({ method, url: stack.join('') })
  }
  return routes
}

/** `/api/v1/sessions/:id` as OpenAPI writes it. */
function documentedPath (url: string): string {
  return url.replace(/:([A-Za-z0-9_]+)/g, '{$1}')
}

t.test('the API reference', async (t) => {
  // An app upstream, so that its catch-all route exists too (never called here).
  const stack = await startTestStack(t, { APP_UPSTREAM_URL: 'http://127.0.0.1:9' })
  const response = await stack.gateway.inject({ method: 'GET', url: '/openapi.json' })
  t.equal(response.statusCode, 200)
  t.match(response.headers['content-type'], /^application\/json/)
  const document = response.json() as Document

  t.test('an OpenAPI 3.1 document', async (t) => {
    t.match(document.openapi, /^3\.1\.\d+$/)
    t.type(document.info.title, 'string')
    t.type(document.info.version, 'string')
    t.ok(Object.keys(document.paths).length > 20)
    for (const [path, item] of Object.entries(document.paths)) {
      t.ok(path.startsWith('/'), `${path} is a path`)
      for (const [method, operation] of Object.entries(item)) {
        t.ok(['get', 'post', 'put', 'patch', 'delete'].includes(method), `${method} ${path}: an HTTP method`)
        t.ok(operation.responses !== undefined && Object.keys(operation.responses).length > 0, `${method} ${path} has responses`)
        t.ok((operation.tags ?? []).length > 0, `${method} ${path} has a tag`)
        t.type(operation['x-access'], 'string', `${method} ${path} says who may call it`)
      }
    }
    t.same(Object.keys(document.paths), Object.keys(document.paths).sort(), 'paths in code-point order')
    t.ok(document.components.schemas.Error !== undefined, 'the error body is a schema')
  })

  t.test('every registered route is in the document', async (t) => {
    const routes = registeredRoutes(stack.gateway)
    t.ok(routes.some((route) => route.url === '/api/v1/sessions/:id'), 'the route walk sees parameters')
    t.ok(routes.some((route) => route.url === '/api/*'), 'and the app upstream\'s catch-all')
    for (const { method, url } of routes) {
      if (EXCLUDED.has(url)) continue
      if (DOCUMENTED_BELOW.includes(url)) {
        const prefix = url.slice(0, -1)
        t.ok(Object.keys(document.paths).some((path) => path.startsWith(prefix)), `${url}: better-auth's paths below ${prefix}`)
        continue
      }
      t.ok(document.paths[documentedPath(url)]?.[method.toLowerCase()] !== undefined, `${method} ${url} is documented`)
    }
    const own = ['/health', '/api/v1/profile', '/auth/jwt']
    for (const path of own) t.type(document.paths[path]?.get?.summary, 'string', `${path} has a summary`)
    t.match(document.paths['/api/v1/profile'].post.responses, { 200: {}, '4XX': {}, '5XX': {} }, 'the error answers are documented')
    t.equal(document.paths['/api/v1/profile'].get['x-access'], 'session')
    t.equal(document.paths['/api/v1/admin/audit'].get['x-access'], 'role:admin')
  })

  t.test('better-auth\'s endpoints at the gateway\'s paths', async (t) => {
    for (const path of ['/auth/sign-in/email', '/auth/sign-up/email', '/auth/sign-out', '/auth/signin', '/auth/signup']) {
      t.ok(document.paths[path]?.post !== undefined, `POST ${path}`)
    }
    t.ok(document.paths['/auth/get-session']?.get !== undefined, 'GET /auth/get-session')
    t.equal(document.paths['/auth/admin/list-users']?.get?.['x-access'], 'role:admin', 'admin endpoints are role:admin')
    t.equal(document.paths['/auth/sign-in/email'].post['x-access'], 'public')
    t.notOk(Object.keys(document.paths).some((path) => path.startsWith('/sign-') || path.startsWith('/api/auth')), 'no path at auth-core\'s own base')
    for (const path of IMPERSONATION_PATHS) t.notOk(`/auth${path}` in document.paths, `${path}: refused with ADMIN_IMPERSONATION off, left out`)
    t.notOk(Object.keys(document.paths).some((path) => path.includes('open-api') || path.endsWith('/reference')), 'the openAPI plugin\'s own endpoints are not served')
    t.ok(document.components.schemas.User !== undefined, 'better-auth\'s models')
  })

  t.test('GET /docs: a page without scripts, with the gateway\'s security headers', async (t) => {
    const page = await stack.gateway.inject({ method: 'GET', url: '/docs' })
    t.equal(page.statusCode, 200)
    t.match(page.headers['content-type'], /^text\/html/)
    const expected = securityHeaders(stack.config.publicUrl)
    for (const [name, value] of Object.entries(expected)) {
      if (name === 'content-security-policy') continue
      t.equal(page.headers[name], value, name)
    }
    const csp = String(page.headers['content-security-policy'])
    t.ok(csp.startsWith(expected['content-security-policy']), 'the gateway\'s CSP')
    t.match(csp, /; style-src 'sha256-[A-Za-z0-9+/=]+'$/, 'plus the one inline style, by its hash')
    t.notMatch(page.body, /<script|<link|<img|<iframe|\ssrc=/i, 'nothing runs, nothing is loaded')
    t.match(page.body, /\/auth\/sign-in\/email/)
    t.match(page.body, /\/api\/v1\/profile/)
    const head = await stack.gateway.inject({ method: 'HEAD', url: '/docs' })
    t.equal(head.statusCode, 200)
    for (const url of ['/docs', '/openapi.json']) {
      const post = await stack.gateway.inject({ method: 'POST', url, payload: {} })
      t.equal(post.statusCode, 404, `POST ${url}: GET and HEAD only`)
    }
  })

  t.test('API_DOCS=false: neither route exists', async (t) => {
    const gateway = await gatewayOn(t, stack, { API_DOCS: 'false' })
    for (const url of ['/openapi.json', '/docs']) {
      const answer = await gateway.inject({ method: 'GET', url })
      t.equal(answer.statusCode, 404, url)
      t.equal((answer.json() as { error: string }).error, 'not_found')
    }
    t.equal(loadConfig({ NODE_ENV: 'production', JWT_SECRET: JWT_TEST_SECRET }, 'gateway').apiDocs, false, 'off by default in production')
    t.equal(loadConfig({ NODE_ENV: 'production', JWT_SECRET: JWT_TEST_SECRET, API_DOCS: 'true' }, 'gateway').apiDocs, true, 'unless turned on')
    t.throws(() => loadConfig({ API_DOCS: 'sometimes', JWT_SECRET: JWT_TEST_SECRET }, 'gateway'), { name: 'ConfigError', variable: 'API_DOCS' })
  })

  t.test('auth-core answering something that is not an OpenAPI document: 502, asked again next time', async (t) => {
    const answers: unknown[] = ['<html>not a document</html>', null, { openapi: '3.1.0' }, { paths: { '/sign-in/email': null } }]
    const fake = await recordingUpstream(t, () => ({ body: answers[Math.min(fake.requests.length - 1, answers.length - 1)] }))
    const gateway = await gatewayOn(t, stack, { AUTH_CORE_URL: fake.url })
    for (const body of answers) {
      const answer = await gateway.inject({ method: 'GET', url: '/openapi.json' })
      t.equal(answer.statusCode, 502, `${JSON.stringify(body)}: 502`)
      t.match(answer.json(), { error: 'bad_gateway' })
    }
    t.equal(fake.requests.filter((r) => r.url === '/openapi.json').length, answers.length, 'a failure is not kept')
  })

  t.test('docs/openapi.json is what `npm run openapi` writes now', async (t) => {
    const written = await openApiDocument(await testDatabase(t))
    t.equal(readFileSync(OPENAPI_DOC_PATH, 'utf8'), written, 'run `npm run openapi` and commit docs/openapi.json')
    t.equal(await openApiDocument(await testDatabase(t)), written, 'the same text every time')
  })

  t.test('kept: auth-core is asked once', async (t) => {
    await stack.authCore.close()
    const again = await stack.gateway.inject({ method: 'GET', url: '/openapi.json' })
    t.equal(again.statusCode, 200)
    t.equal(again.body, response.body)
  })
})
