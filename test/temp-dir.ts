import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** The subset of tap's `t` the helpers need. */
export interface Teardown {
  teardown: (fn: () => unknown) => void
}

/**
 * A new folder under the system's temporary one, removed when the test ends. A module of its own
 * (re-exported by helper.ts) so that a test needing nothing of the services does not load them.
 */
export function tempDir (t: Teardown, prefix = 'auth-gateway-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  return dir
}
