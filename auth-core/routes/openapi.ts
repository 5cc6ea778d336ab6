import { betterAuth } from 'better-auth'
import { openAPI } from 'better-auth/plugins'
import type { FastifyInstance } from 'fastify'
import type { Auth } from '../auth.ts'

/** Internal (auth-core is never public): better-auth's OpenAPI document, for the gateway's `GET /openapi.json`. */
export const OPENAPI_PATH = '/openapi.json'

export interface OpenApiRoutesOptions {
  /** Paths (better-auth's, e.g. `/admin/impersonate-user`) auth-core refuses whatever the caller: left out. */
  refused: ReadonlySet<string>
}

/**
 * A second better-auth on the served one's options, with its `openAPI` plugin, used only to generate
 * the document: the served instance gets no `/open-api/generate-schema` or `/reference` endpoint
 * (the latter loads Scalar from a CDN).
 */
function documenting (auth: Auth) {
  return betterAuth({ ...auth.options, plugins: [...auth.options.plugins, openAPI({ disableDefaultReference: true })] })
}

/** `GET /openapi.json`: made once (on first ask), then the same text. */
export default async function openApiRoutes (app: FastifyInstance, options: OpenApiRoutesOptions): Promise<void> {
  let text: Promise<string> | null = null
  const generate = async (): Promise<string> => {
    const document = await documenting(app.auth).api.generateOpenAPISchema()
    const paths = Object.fromEntries(Object.entries(document.paths).filter(([path]) => !options.refused.has(path)))
    return JSON.stringify({ ...document, paths })
  }
  app.get(OPENAPI_PATH, async (_request, reply) => {
    // A failure (the schema check needs Postgres) is not kept: the next ask tries again.
    text ??= generate().catch((err: unknown) => { text = null; throw err })
    return reply.type('application/json').send(await text)
  })
}
