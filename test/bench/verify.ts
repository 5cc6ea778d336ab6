import { hashPassword, verifyPassword } from 'better-auth/crypto'

/*
 * The raw password-verify rate, in a process of its own started with auth-core's environment and
 * priority (run.ts): what sign-in cannot beat. argv: password, duration (s), concurrency.
 */
const [password, duration, concurrency] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])]
const hash = await hashPassword(password)
const deadline = Date.now() + duration * 1000
const latencies: number[] = []
await Promise.all(Array.from({ length: concurrency }, async () => {
  while (Date.now() < deadline) {
    const started = performance.now()
    await verifyPassword({ hash, password })
    latencies.push(performance.now() - started)
  }
}))
latencies.sort((a, b) => a - b)
const at = (q: number): number => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0
process.stdout.write(`${JSON.stringify({ rps: latencies.length / duration, p50: at(0.5), p99: at(0.99), errors: 0, requests: latencies.length })}\n`)
