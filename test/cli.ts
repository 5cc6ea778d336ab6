import { spawn } from 'node:child_process'

export interface ScriptRun {
  code: number | null
  stdout: string
  stderr: string
}

/**
 * Runs one of the project's command-line entries (through tsx, as npm does) and collects what it
 * printed. With `timeoutMs`, a run that has not exited by then is killed (its `code` is null).
 */
export async function runScript (script: string, args: string[], env?: Record<string, string>, timeoutMs?: number): Promise<ScriptRun> {
  const child = spawn(process.execPath, ['--import=tsx', script, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: env === undefined ? process.env : { PATH: process.env.PATH ?? '', ...env }, timeout: timeoutMs })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
  const code = await new Promise<number | null>((resolve) => { child.on('close', resolve) })
  return { code, stdout, stderr }
}
