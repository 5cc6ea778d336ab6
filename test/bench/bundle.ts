import { build } from 'esbuild'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'

/*
 * `--bundle`: the gateway as plain JavaScript (one esbuild bundle of service.ts, packages left to
 * node_modules), started by `node` alone. Through tsx (`npm run start:gateway`, and the bench by
 * default) every process also carries tsx's module-loader thread and its transformed sources.
 */

const HERE = new URL('.', import.meta.url).pathname
// Under node_modules so the bundle resolves the project's packages as the sources do.
const OUT_DIR = join(HERE, '..', '..', 'node_modules', '.cache', 'auth-gateway-bench')

/** Bundles service.ts and returns the bundle's path. */
export async function bundleService (): Promise<string> {
  mkdirSync(OUT_DIR, { recursive: true })
  const outfile = join(OUT_DIR, 'service.mjs')
  await build({
    entryPoints: [join(HERE, 'service.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    outfile,
    logLevel: 'warning'
  })
  return outfile
}
