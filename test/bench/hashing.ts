/*
 * How the benchmark runs the process that hashes passwords (auth-core, and the verify-bound
 * reference), as docker-compose.yml runs auth-core:
 * - below the gateway's CPU priority, so a wave of sign-ins (scrypt in the libuv pool) takes the CPU
 *   the gateway leaves over instead of the CPU its requests need (`nice`, as `cpu_shares` does for
 *   the container);
 * - with glibc's malloc asking for transparent huge pages, so scrypt's 32 MiB working buffer (a
 *   fresh mmap per hash) takes a few page faults instead of thousands.
 */
export const HASHING_NICE = 10
export const HASHING_ENV: Readonly<Record<string, string>> = { GLIBC_TUNABLES: 'glibc.malloc.hugetlb=1' }
