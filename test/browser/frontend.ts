import { copyFile, readFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { extname, join, normalize } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'
import { tempDir } from '../temp-dir.ts'
import type { Teardown } from '../temp-dir.ts'

const PAGE_DIR = fileURLToPath(new URL('./page/', import.meta.url))

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.map': 'application/json'
}

/** Bundles the test page (`page/main.ts` with `@auth-gateway/client`) into a temporary folder. */
export async function buildFrontend (t: Teardown): Promise<string> {
  const outdir = tempDir(t, 'auth-gateway-frontend-')
  await build({
    entryPoints: [join(PAGE_DIR, 'main.ts')],
    outfile: join(outdir, 'main.js'),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    sourcemap: 'linked',
    logLevel: 'silent'
  })
  await copyFile(join(PAGE_DIR, 'index.html'), join(outdir, 'index.html'))
  return outdir
}

export interface StaticSite {
  /** `http://localhost:<port>`: the page must be on the same host name as the gateway for cookies. */
  origin: string
  port: number
}

/** A static file server for one folder on loopback, closed when the test ends. */
export async function serveStatic (t: Teardown, root: string): Promise<StaticSite> {
  const server = createServer((req, res) => {
    const pathname = new URL(req.url ?? '/', 'http://localhost').pathname
    const file = normalize(join(root, pathname === '/' ? 'index.html' : pathname))
    if (!file.startsWith(root) || req.method !== 'GET') {
      res.writeHead(404).end()
      return
    }
    readFile(file).then((body) => {
      res.writeHead(200, { 'content-type': CONTENT_TYPES[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' })
      res.end(body)
    }, () => {
      res.writeHead(404).end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  t.teardown(() => new Promise<void>((resolve) => {
    server.closeAllConnections()
    server.close(() => { resolve() })
  }))
  return { origin: `http://localhost:${port}`, port }
}
