import { request } from 'node:http'
import { ConfigError, loadConfig } from '../../shared/config.ts'
import type { Service } from '../../shared/config.ts'

/*
 * `node dist/gateway/cli/healthcheck.js [gateway|auth-core]`: the container's HEALTHCHECK (slim
 * images have no curl). Exit 0 when the service answers `GET /health` with 200, 1 otherwise, 2 for
 * a bad argument. Without an argument it probes the gateway (HOST:PORT) and, when nothing listens
 * there, auth-core (AUTH_CORE_HOST:AUTH_CORE_PORT): one image runs either, and a container runs one.
 */

const USAGE = 'Usage: node dist/gateway/cli/healthcheck.js [gateway|auth-core]\n'
const TIMEOUT_MS = 2_000
// A service listening on every interface is reached on loopback from inside its container.
const WILDCARDS = new Set(['0.0.0.0', '::', '[::]'])

interface Target {
  service: Service
  host: string
  port: number
}

interface Probe {
  ok: boolean
  /** Nothing listens there: the container may run the other service. */
  refused: boolean
  detail: string
}

function targetOf (service: Service): Target {
  if (service === 'gateway') {
    const config = loadConfig(process.env, 'gateway')
    return { service, host: config.host, port: config.port }
  }
  const config = loadConfig(process.env, 'auth-core')
  return { service, host: config.authCoreHost, port: config.authCorePort }
}

async function probe ({ host, port }: Target): Promise<Probe> {
  const address = WILDCARDS.has(host) ? '127.0.0.1' : host
  const where = `${address}:${port}`
  return await new Promise<Probe>((resolve) => {
    const req = request({ host: address, port, path: '/health', method: 'GET', agent: false, timeout: TIMEOUT_MS }, (res) => {
      res.resume()
      const ok = res.statusCode === 200
      resolve({ ok, refused: false, detail: `GET http://${where}/health answered ${String(res.statusCode)}` })
    })
    req.once('timeout', () => { req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)) })
    req.once('error', (err: NodeJS.ErrnoException) => {
      const refused = err.code === 'ECONNREFUSED'
      resolve({ ok: false, refused, detail: refused ? `nothing listens on ${where}` : `GET http://${where}/health failed: ${err.message}` })
    })
    req.end()
  })
}

const argument = process.argv[2]
if (argument !== undefined && argument !== 'gateway' && argument !== 'auth-core') {
  process.stderr.write(USAGE)
  process.exitCode = 2
} else {
  const services: Service[] = argument === undefined ? ['gateway', 'auth-core'] : [argument]
  const failures: string[] = []
  let healthy: string | undefined
  for (const service of services) {
    let target: Target
    try {
      target = targetOf(service)
    } catch (err) {
      // Not configured for this service (e.g. no BETTER_AUTH_SECRET in a gateway's container).
      if (!(err instanceof ConfigError)) throw err
      failures.push(`${service}: ${err.message}`)
      continue
    }
    const result = await probe(target)
    if (result.ok) {
      healthy = `${service} healthy: ${result.detail}`
      break
    }
    failures.push(`${service}: ${result.detail}`)
    // It listens but is unwell: that is the container's answer, whatever else might listen.
    if (!result.refused) break
  }
  if (healthy !== undefined) process.stdout.write(`${healthy}\n`)
  else {
    process.stderr.write(`${failures.join('\n')}\n`)
    process.exitCode = 1
  }
}
