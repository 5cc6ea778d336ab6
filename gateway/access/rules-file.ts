import { readFileSync } from 'node:fs'
import { ConfigError } from '../../shared/config.ts'
import { matchingRules } from './is-endpoint-accessible.ts'
import type { Access, AccessRule, RuleMethod } from './rules.ts'
import { APP_ROUTE } from '../route-paths.ts'

/*
 * `ACCESS_RULES_FILE`: more rules for the app upstream, as data. A JSON array of
 * `{ "methods": [...], "path": "/api/reports/*", "access": "role:editor" }`, each refining the
 * `/api/*` catch-all (the most specific rule decides, as in the built-in table). Checked at startup
 * with the table's own test: every method of every rule must be decided by that rule alone.
 */

const VARIABLE = 'ACCESS_RULES_FILE'
const METHODS: readonly RuleMethod[] = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', '*']
const KEYS = ['access', 'methods', 'path']
// Path segments as the normaliser leaves them: no dot segments, no empty segments, no encoding.
const SEGMENT = /^[A-Za-z0-9_~-][A-Za-z0-9._~-]*$/
const ROLE = /^role:[a-z0-9_-]{1,64}$/

function fail (file: string, expected: string): never {
  throw new ConfigError(VARIABLE, `(${file}) ${expected}`)
}

function isValidPath (path: string): boolean {
  if (!path.startsWith('/api/')) return false
  const segments = path.slice(1).split('/')
  const last = segments.at(-1)
  const fixed = last === '*' ? segments.slice(0, -1) : segments
  // `/api/*` itself is the catch-all (APP_ROUTE): a file refines below it.
  return fixed.length >= 2 && fixed.every((segment) => SEGMENT.test(segment))
}

function parseRule (file: string, index: number, entry: unknown): AccessRule {
  const at = `entry ${index}`
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) fail(file, `${at} must be an object with methods, path and access`)
  const record = entry as Record<string, unknown>
  const unknown = Object.keys(record).filter((key) => !KEYS.includes(key))
  if (unknown.length > 0) fail(file, `${at} has unknown field ${unknown.map((key) => JSON.stringify(key)).join(', ')}`)
  const { methods, path, access } = record
  if (!Array.isArray(methods) || methods.length === 0 || !methods.every((m): m is RuleMethod => typeof m === 'string' && (METHODS as readonly string[]).includes(m))) {
    fail(file, `${at}: methods must be a non-empty list of ${METHODS.join(', ')}`)
  }
  if (new Set(methods).size !== methods.length || (methods.includes('*') && methods.length > 1)) fail(file, `${at}: methods must not repeat, and "*" stands alone`)
  if (typeof path !== 'string' || !isValidPath(path)) {
    fail(file, `${at}: path must be below /api/, exact (/api/reports/summary) or a prefix (/api/reports/*), of plain segments (got ${JSON.stringify(path)})`)
  }
  if (access !== 'public' && access !== 'session' && (typeof access !== 'string' || !ROLE.test(access))) {
    fail(file, `${at}: access must be "public", "session" or "role:<name>" (lower-case letters, digits, _ and -)`)
  }
  return Object.freeze({ methods: Object.freeze([...methods]), path, access: access as Access })
}

/**
 * Whether some path matches both patterns: segment by segment, a literal matches itself, a route
 * parameter (`:id`) any one segment, and a trailing `*` whatever follows.
 */
function patternsOverlap (a: string, b: string): boolean {
  const left = a.split('/')
  const right = b.split('/')
  for (let i = 0; ; i++) {
    const x = left[i]
    const y = right[i]
    if (x === '*' && i === left.length - 1) return y !== undefined
    if (y === '*' && i === right.length - 1) return x !== undefined
    if (x === undefined || y === undefined) return x === y
    if (x !== y && !x.startsWith(':') && !y.startsWith(':')) return false
  }
}

/** A path a pattern covers: the pattern itself, or one below a prefix. */
function samplePath (pattern: string): string {
  return pattern.endsWith('/*') ? `${pattern.slice(0, -1)}x` : pattern
}

function expand (methods: readonly RuleMethod[]): Array<Exclude<RuleMethod, '*'>> {
  return methods.includes('*') ? ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] : methods as Array<Exclude<RuleMethod, '*'>>
}

/**
 * The file's rules, checked against the built-in table: under `/api/`, clear of every built-in rule
 * but the catch-all (a built-in route keeps its own rule), and each the only rule deciding its
 * own paths and methods (two entries deciding the same request is an overlap).
 */
export function parseAccessRules (file: string, text: string, builtIn: readonly AccessRule[]): AccessRule[] {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    fail(file, `must hold JSON: ${err instanceof Error ? err.message : String(err)}`)
  }
  if (!Array.isArray(parsed)) fail(file, 'must hold a JSON array of rules')
  // A prefix covers the path itself too (`/api/reports/*` guards `/api/reports`, the area's index,
  // which would otherwise fall to the catch-all), as part of the same entry.
  const entries = parsed.flatMap((entry, index) => {
    const rule = parseRule(file, index, entry)
    return rule.path.endsWith('/*') ? [{ index, rule }, { index, rule: Object.freeze({ ...rule, path: rule.path.slice(0, -2) }) }] : [{ index, rule }]
  })
  const reserved = builtIn.filter((rule) => rule.path !== APP_ROUTE)
  for (const { index, rule } of entries) {
    for (const other of reserved) {
      if (patternsOverlap(rule.path, other.path)) {
        fail(file, `entry ${index} (${rule.path}) overlaps the built-in rule for ${other.path}: built-in routes keep their own rules`)
      }
    }
  }
  const rules = entries.map(({ rule }) => rule)
  const all = [...builtIn, ...rules]
  for (const { index, rule } of entries) {
    for (const method of expand(rule.methods)) {
      const deciding = matchingRules(all, method, samplePath(rule.path))
      if (deciding.length !== 1 || deciding[0] !== rule) {
        const others = deciding.filter((other) => other !== rule).map((other) => `${other.methods.join(',')} ${other.path}`)
        fail(file, `entry ${index} (${method} ${rule.path}) overlaps ${others.join('; ')}: one request, two rules`)
      }
    }
  }
  return rules
}

/** Reads and checks `ACCESS_RULES_FILE`; a problem stops startup naming the file and the entry. */
export function loadAccessRules (file: string, builtIn: readonly AccessRule[]): AccessRule[] {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    fail(file, `cannot be read: ${(err as NodeJS.ErrnoException).code ?? String(err)}`)
  }
  return parseAccessRules(file, text, builtIn)
}
