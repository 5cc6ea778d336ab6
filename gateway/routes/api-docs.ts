import type { FastifyInstance } from 'fastify'
import type { AccessRule } from '../access/rules.ts'
import { BadGatewayError, upstreamError } from '../errors.ts'
import { documentText, mergeDocuments } from '../openapi/document.ts'
import type { JsonObject, OpenApiDocument } from '../openapi/document.ts'
import { referencePage, STYLE_SOURCE } from '../openapi/reference-page.ts'
import { DOCS_ROUTE, AUTH_CORE_OPENAPI_PATH, OPENAPI_ROUTE } from '../route-paths.ts'

export interface ApiDocsRoutesOptions {
  /** `PUBLIC_URL`: the document's server. */
  publicUrl: string
  /** The access rules: each operation's `x-access`. */
  rules: readonly AccessRule[]
}

function isObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** auth-core makes its document on the first ask (a schema check, a second better-auth): a few hundred ms. */
const DOCUMENT_TIMEOUT_MS = 10_000

const DOC_TAGS = ['Reference']

/**
 * `GET /openapi.json` and `GET /docs` (with `API_DOCS`): the gateway's routes merged with better-auth's
 * document, which auth-core serves on its internal `/openapi.json`. Asked once, on the first request,
 * then kept: a failure is not, so the next request asks again.
 */
export default async function apiDocsRoutes (app: FastifyInstance, options: ApiDocsRoutesOptions): Promise<void> {
  let merged: Promise<{ json: string, html: string }> | null = null

  const betterAuthDocument = async (): Promise<OpenApiDocument> => {
    let response
    try {
      response = await app.authCore.request({ method: 'GET', path: AUTH_CORE_OPENAPI_PATH, headersTimeout: DOCUMENT_TIMEOUT_MS, bodyTimeout: DOCUMENT_TIMEOUT_MS })
    } catch (err) {
      throw upstreamError(err, 'auth')
    }
    const text = await response.body.text()
    if (response.statusCode !== 200) throw new BadGatewayError('auth', { cause: new Error(`auth-core ${AUTH_CORE_OPENAPI_PATH} answered ${response.statusCode}`) })
    let document: unknown
    try {
      document = JSON.parse(text)
    } catch (err) {
      throw new BadGatewayError('auth', { cause: err })
    }
    // What the merge reads: an object whose `paths` is an object of path items.
    const paths = (document as { paths?: unknown } | null)?.paths
    if (!isObject(document) || !isObject(paths) || !Object.values(paths).every(isObject)) {
      throw new BadGatewayError('auth', { cause: new Error(`auth-core ${AUTH_CORE_OPENAPI_PATH} answered no OpenAPI document`) })
    }
    return document as OpenApiDocument
  }
  const build = async (): Promise<{ json: string, html: string }> => {
    const document: JsonObject = mergeDocuments(app.swagger() as unknown as OpenApiDocument, await betterAuthDocument(), options)
    return { json: documentText(document), html: referencePage(document) }
  }
  const documents = async (): Promise<{ json: string, html: string }> => {
    merged ??= build().catch((err: unknown) => { merged = null; throw err })
    return merged
  }

  app.get(OPENAPI_ROUTE, {
    schema: { summary: 'This API reference, as OpenAPI 3.1', tags: DOC_TAGS, response: { 200: { description: 'The OpenAPI document', type: 'object', additionalProperties: true } } }
  }, async (_request, reply) => {
    const { json } = await documents()
    return reply.type('application/json; charset=utf-8').header('cache-control', 'no-cache').send(json)
  })

  app.get(DOCS_ROUTE, {
    schema: { summary: 'This API reference, as a page', tags: DOC_TAGS, produces: ['text/html'], response: { 200: { description: 'An HTML page without scripts', type: 'string' } } }
  }, async (_request, reply) => {
    const { html } = await documents()
    // The gateway's CSP, with the page's one inline style allowed by its hash.
    const csp = String(reply.getHeader('content-security-policy') ?? "default-src 'none'; frame-ancestors 'none'")
    return reply.type('text/html; charset=utf-8').header('cache-control', 'no-cache').header('content-security-policy', `${csp}; style-src ${STYLE_SOURCE}`).send(html)
  })
}
