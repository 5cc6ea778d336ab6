import type { FastifyInstance } from 'fastify'
import type { UpstreamName, UpstreamTokenConfig } from '../../shared/config.ts'
import { publicFacts } from '../client-address.ts'
import { RagUpstreamNotConfiguredError } from '../errors.ts'
import { IdentityTokens, pseudonymousSubjects } from '../identity/identity-tokens.ts'
import { bufferBodies, forward } from '../proxy/forward.ts'
import { DEFAULT_UPSTREAM_LIMITS, UpstreamClient } from '../proxy/upstream-client.ts'
import type { UpstreamLimits } from '../proxy/upstream-client.ts'
import { RAG_ROUTES } from '../route-paths.ts'

export interface RagRoutesOptions {
  /** How the RAG upstream's identity tokens are signed and whom they name. */
  tokens: UpstreamTokenConfig
  /** `JWT_SECRET`: the pseudonymous subjects are keyed with a key derived from it. */
  jwtSecret: string
  /** `PUBLIC_URL`: its host and protocol are the `X-Forwarded-Host`/`-Proto` upstreams receive. */
  publicUrl: string
  /** Deadline, idle timeout and buffering cap of the calls (`UPSTREAM_TIMEOUT`, …). */
  limits?: Readonly<UpstreamLimits>
}

const NAME: UpstreamName = 'rag'

/** `POST /api/v1/query|select` → the RAG upstream: public, the caller's identity attached when signed in. */
export default async function ragRoutes (app: FastifyInstance, options: RagRoutesOptions): Promise<void> {
  const tokens = new IdentityTokens(app, NAME, options.tokens, pseudonymousSubjects(options.jwtSecret))
  const origin = publicFacts(options.publicUrl)
  const pool = app.upstreamPools.rag
  const upstream = pool === undefined ? undefined : new UpstreamClient(pool, options.limits ?? DEFAULT_UPSTREAM_LIMITS)
  bufferBodies(app, 'application/json', true)
  for (const url of RAG_ROUTES) {
    app.post(url, {
      config: { identity: 'optional' },
      schema: {
        summary: `The RAG upstream's ${url.slice(url.lastIndexOf('/') + 1)}`,
        description: 'Forwarded to `RAG_UPSTREAM_URL` as it is (JSON), with the caller\'s identity token when signed in; the answer is the upstream\'s, streamed when long. 503 `rag_upstream_not_configured` without an upstream.',
        tags: ['RAG']
      }
    }, async (request, reply) => {
      if (upstream === undefined) throw new RagUpstreamNotConfiguredError()
      return forward(tokens, upstream, NAME, origin, request, reply)
    })
  }
}
