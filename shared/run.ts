import closeWithGrace from 'close-with-grace'
import { ConfigError, loadConfig } from './config.ts'
import type { Config } from './config.ts'

export const CLOSE_GRACE_MS = 10_000

/**
 * Runs a command-line entry: loads the configuration (a bad variable prints one line and exits 1),
 * starts, and on SIGINT/SIGTERM drains through `close` before exiting.
 */
export async function run (start: (config: Readonly<Config>) => Promise<(() => Promise<void>) | undefined>): Promise<void> {
  let config: Readonly<Config>
  try {
    config = loadConfig()
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
