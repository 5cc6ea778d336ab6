import type { FastifyInstance } from 'fastify'
import { AUTH_CORE_TIMEOUT_MS } from '../plugins/auth-core-client.ts'

type CheckResult = 'ok' | string

async function check (run: () => Promise<void>): Promise<CheckResult> {
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([
      run(),
      new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => { reject(new Error('timed out')) }, AUTH_CORE_TIMEOUT_MS)
      })
    ])
    return 'ok'
  } catch (err) {
    return (err as Error).message || 'failed'
  } finally {
    clearTimeout(timer)
  }
}

/** `GET /health` (liveness) and `GET /ready` (Postgres and auth-core answer). */
export default async function healthRoutes (app: FastifyInstance): Promise<void> {
  app.get('/health', async () => ({ status: 'ok' }))

  app.get('/ready', async (request, reply) => {
    const [postgres, authCore] = await Promise.all([
      check(async () => { await app.pg.query('SELECT 1') }),
      check(async () => {
        const { statusCode, body } = await app.authCore.request({ method: 'GET', path: '/health' })
        await body.dump()
        if (statusCode !== 200) throw new Error(`answered ${statusCode}`)
      })
    ])
    const checks = { postgres, authCore }
    const down = Object.entries(checks).filter(([, result]) => result !== 'ok').map(([name]) => name)
    if (down.length === 0) return { status: 'ready', checks }
    request.log.warn({ checks }, 'not ready')
    return reply.code(503).send({
      error: 'not_ready',
      message: `Not ready: ${down.join(' and ')} ${down.length > 1 ? 'are' : 'is'} not answering`,
      checks
    })
  })
}
