import t from 'tap'
import { readFileSync } from 'node:fs'
import { errorsDoc, ERRORS_DOC_PATH } from '../../gateway/cli/errors-doc.ts'
import * as gatewayErrors from '../../gateway/errors.ts'
import * as authCoreErrors from '../../auth-core/errors.ts'
import { FRAMEWORK_ERRORS } from '../../shared/errors.ts'

t.test('docs/errors.md is what `npx tsx gateway/cli/errors-doc.ts` writes', async (t) => {
  const onDisk = readFileSync(ERRORS_DOC_PATH, 'utf8')
  t.equal(onDisk, errorsDoc(), 'docs/errors.md is stale: run `npx tsx gateway/cli/errors-doc.ts`')
})

t.test('every registered code and every Fastify mapping is in the document', async (t) => {
  const doc = errorsDoc()
  for (const entry of [...gatewayErrors.GATEWAY_ERRORS.entries, ...authCoreErrors.AUTH_CORE_ERRORS.entries]) {
    t.match(doc, `| ${entry.status} | \`${entry.code.toLowerCase()}\` |`, `${entry.code}`)
  }
  for (const entry of FRAMEWORK_ERRORS) t.match(doc, `\`${entry.source}\``, entry.source)
})

t.test('every error class a service exports is in its registry (else a 5xx loses its message and a 4xx its code)', async (t) => {
  const services: Array<[string, Record<string, unknown>, typeof gatewayErrors.GATEWAY_ERRORS]> = [
    ['gateway', gatewayErrors, gatewayErrors.GATEWAY_ERRORS],
    ['auth-core', authCoreErrors, authCoreErrors.AUTH_CORE_ERRORS]
  ]
  for (const [service, exports, registry] of services) {
    const classes = Object.entries(exports).filter(([, value]) => typeof value === 'function' && (value as { prototype?: unknown }).prototype instanceof Error)
    t.ok(classes.length > 0, `${service} exports error classes`)
    for (const [name, type] of classes) t.ok(registry.entries.some((entry) => entry.type === type), `${service}: ${name} is in the registry`)
  }
})
