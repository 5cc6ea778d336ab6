/** `work`, or a rejection naming `what` once `ms` have passed without an answer (the timer is always cleared). */
export async function withDeadline<T> (work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      work,
      new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => { reject(new Error(`${what} did not answer within ${ms} ms`)) }, ms)
      })
    ])
  } finally {
    clearTimeout(timer)
  }
}
