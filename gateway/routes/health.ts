import type { FastifyInstance } from 'fastify'
import { NotReadyError } from '../errors.ts'
import { AUTH_LOOKUP_TIMEOUT_MS } from '../proxy/upstream-client.ts'
import { withDeadline } from '../../shared/deadline.ts'

type CheckResult = { ok: true } | { ok: false, err: unknown }

async function check (name: string, run: () => Promise<void>): Promise<CheckResult> {
  try {
    await withDeadline(run(), AUTH_LOOKUP_TIMEOUT_MS, name)
    return { ok: true }
  } catch (err) {
    return { ok: false, err }
  }
}

/**
 * `GET /health` (liveness) and `GET /ready` (Postgres and auth-core answer). `/ready` is public: it
 * says `ok` or `down` per dependency, and why one is down goes to the log only.
 */
export default async function healthRoutes (app: FastifyInstance): Promise<void> {
  app.get('/health', async () => ({ status: 'ok' }))

  app.get('/ready', async (request, reply) => {
    const [postgres, authCore] = await Promise.all([
      check('postgres', async () => { await app.pg.query('SELECT 1') }),
      check('auth-core', async () => {
        const { statusCode, body } = await app.authCore.request({ method: 'GET', path: '/health', headersTimeout: AUTH_LOOKUP_TIMEOUT_MS, bodyTimeout: AUTH_LOOKUP_TIMEOUT_MS })
        await body.dump()
        if (statusCode !== 200) throw new Error(`auth-core /health answered ${statusCode}`)
      })
    ])
    const checks = { postgres: postgres.ok ? 'ok' : 'down', authCore: authCore.ok ? 'ok' : 'down' }
    const failed = Object.entries({ postgres, authCore }).flatMap(([name, result]) => result.ok ? [] : [{ name, err: result.err }])
    if (failed.length === 0) return { status: 'ready', checks }
    for (const { name, err } of failed) request.log.warn({ dependency: name, err }, 'readiness check failed')
    const down = failed.map(({ name }) => name)
    const error = new NotReadyError(`${down.join(' and ')} ${down.length > 1 ? 'are' : 'is'} not answering`)
    return reply.code(error.statusCode).send({ error: 'not_ready', message: error.message, status: 'not_ready', checks })
  })
}
