import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { loadConfig } from '../../shared/config.ts'
import type { Env } from '../../shared/config.ts'
import { startEmbeddedPostgres } from '../../shared/db.ts'
import { OPENAPI_ROUTE } from '../route-paths.ts'
import { startStack } from './stack.ts'

/*
 * `npm run openapi`: writes `docs/openapi.json`, the document `GET /openapi.json` answers, for the
 * default configuration (never this shell's environment: the file is the same on every machine).
 * It runs the whole stack on loopback, on a throw-away embedded database, and asks the gateway.
 * `test/gateway/routes/openapi.test.ts` fails when the file differs from what this would write.
 */

export const OPENAPI_DOC_PATH = fileURLToPath(new URL('../../docs/openapi.json', import.meta.url))

// Placeholders: the document does not depend on them, and no secret of a real deployment is read.
const DOCUMENTED_ENV: Env = {
  PORT: '0',
  AUTH_CORE_PORT: '0',
  BETTER_AUTH_SECRET: 'openapi-document-placeholder-secret-0000',
  JWT_SECRET: 'openapi-document-placeholder-secret-1111',
  API_DOCS: 'true',
  LOG_LEVEL: 'silent'
}

/** The text of `docs/openapi.json`, from a stack on `databaseUrl` (else a throw-away embedded database). */
export async function openApiDocument (databaseUrl?: string): Promise<string> {
  const dataDir = mkdtempSync(join(tmpdir(), 'auth-gateway-openapi-'))
  const embedded = databaseUrl === undefined ? await startEmbeddedPostgres({ dataDir: null }) : undefined
  try {
    const config = loadConfig({ ...DOCUMENTED_ENV, DATA_DIR: dataDir, DATABASE_URL: databaseUrl ?? embedded?.url })
    const stack = await startStack(config)
    try {
      const response = await stack.gateway.inject({ method: 'GET', url: OPENAPI_ROUTE })
      if (response.statusCode !== 200) throw new Error(`GET ${OPENAPI_ROUTE} answered ${response.statusCode}: ${response.body}`)
      return response.body
    } finally {
      await stack.close()
    }
  } finally {
    await embedded?.stop()
    rmSync(dataDir, { recursive: true, force: true })
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  writeFileSync(OPENAPI_DOC_PATH, await openApiDocument())
  process.stdout.write(`wrote ${OPENAPI_DOC_PATH}\n`)
}
