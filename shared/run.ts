import closeWithGrace from 'close-with-grace'
import { ConfigError, loadConfig } from './config.ts'
import type { AuthCoreConfig, Config, GatewayConfig, Service } from './config.ts'

export const CLOSE_GRACE_MS = 10_000

type Start<C> = (config: Readonly<C>) => Promise<(() => Promise<void>) | undefined>

function configFor (service: Service | undefined): Readonly<Config | GatewayConfig | AuthCoreConfig> {
  if (service === 'gateway') return loadConfig(process.env, 'gateway')
  if (service === 'auth-core') return loadConfig(process.env, 'auth-core')
  return loadConfig()
}

/**
 * Runs a command-line entry: loads the configuration of one service, or of both (a bad variable
 * prints one line and exits 1), starts, and on SIGINT/SIGTERM drains through `close` before exiting.
 */
export async function run (start: Start<Config>): Promise<void>
export async function run (service: 'gateway', start: Start<GatewayConfig>): Promise<void>
export async function run (service: 'auth-core', start: Start<AuthCoreConfig>): Promise<void>
export async function run (serviceOrStart: Service | Start<Config>, maybeStart?: Start<GatewayConfig> | Start<AuthCoreConfig>): Promise<void> {
  const service = typeof serviceOrStart === 'string' ? serviceOrStart : undefined
  const start = (typeof serviceOrStart === 'function' ? serviceOrStart : maybeStart) as (config: Readonly<Config | GatewayConfig | AuthCoreConfig>) => ReturnType<Start<Config>>
  let config: Readonly<Config | GatewayConfig | AuthCoreConfig>
  try {
    config = configFor(service)
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`)
      process.exit(1)
    }
    throw err
  }
  let close: (() => Promise<void>) | undefined
  try {
    close = await start(config)
  } catch (err) {
    process.stderr.write(`startup failed: ${(err as Error).message}\n`)
    process.exit(1)
  }
  if (close === undefined) return
  const stop = close
  closeWithGrace({ delay: CLOSE_GRACE_MS }, async ({ err, signal }) => {
    if (err !== undefined) process.stderr.write(`stopping after an error: ${err.message}\n`)
    else if (signal !== undefined) process.stderr.write(`${signal} received, draining\n`)
    await stop()
  })
}
