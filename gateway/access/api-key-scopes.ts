import type { ApiKeyScope } from '../../shared/api-keys.ts'
import { RAG_ROUTES } from '../route-paths.ts'

const RAG_PATTERNS: ReadonlySet<string> = new Set(RAG_ROUTES)

/**
 * Whether an API key of `scope` opens the route `pattern` (the pattern the router matched, so no
 * spelling of a path can stand in for another): `rag` the RAG routes only, `api` every `/api/*`
 * route. No key opens `/auth/*`: a key cannot mint tokens, manage sessions or make more keys.
 */
export function apiKeyOpens (scope: ApiKeyScope, pattern: string): boolean {
  if (RAG_PATTERNS.has(pattern)) return true
  return scope === 'api' && pattern.startsWith('/api/')
}
