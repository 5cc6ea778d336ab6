import { readFileSync } from 'node:fs'
import { ConfigError } from '../../shared/config.ts'
import type { Access, AccessRule, RuleMethod } from './rules.ts'
import { ROLE_NAME } from '../../shared/roles.ts'
import { APP_ROUTE } from '../route-paths.ts'

/*
 * `ACCESS_RULES_FILE`: more rules for the app upstream, as data. A JSON array of
 * `{ "methods": [...], "path": "/api/reports/*", "access": "role:editor" }`, each refining the
 * `/api/*` catch-all (the most specific rule decides, as in the built-in table). Checked at startup
 * with the coverage proof's own rule, one request, one rule: an entry may not reach a built-in
 * route, nor decide a request that another entry decides as specifically.
 */

const VARIABLE = 'ACCESS_RULES_FILE'
const METHODS: readonly RuleMethod[] = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', '*']
const EVERY_METHOD: ReadonlyArray<Exclude<RuleMethod, '*'>> = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE']
const KEYS = ['access', 'methods', 'path']
// Segments as the normaliser leaves them (no dot segments, no empty segments, no encoding), in lower
// case: the app upstream's paths are matched regardless of case (an upstream may route them so).
const LITERAL = /^[a-z0-9_~-][a-z0-9._~-]*$/
const PARAMETER = /^:[A-Za-z_][A-Za-z0-9_]*$/

/** `role:<name>`, with a role name as `npm run admin -- set-role` and the admin plugin keep them. */
function isRoleAccess (access: string): boolean {
  return access.startsWith('role:') && ROLE_NAME.test(access.slice('role:'.length))
}

function fail (file: string, expected: string): never {
  throw new ConfigError(VARIABLE, `(${file}) ${expected}`)
}

/** Why a path cannot be a file rule's, or undefined when it can. */
function pathProblem (path: string): string | undefined {
  if (!path.startsWith('/api/')) return 'must be below /api/'
  const segments = path.slice('/api/'.length).split('/')
  const fixed = segments.at(-1) === '*' ? segments.slice(0, -1) : segments
  // `/api/*` itself is the catch-all (APP_ROUTE): a file refines below it.
  if (fixed.length === 0) return 'must be below /api/* (that is the catch-all itself)'
  for (const segment of fixed) {
    if (PARAMETER.test(segment) || LITERAL.test(segment)) continue
    if (LITERAL.test(segment.toLowerCase())) return 'must be in lower case (the app upstream\'s paths are matched regardless of case)'
    return `has a segment ${JSON.stringify(segment)} that is not a plain name, a :parameter or a final *`
  }
  return undefined
}

function parseRule (file: string, index: number, entry: unknown): AccessRule {
  const at = `entry ${index}`
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) fail(file, `${at} must be an object with methods, path and access`)
  const record = entry as Record<string, unknown>
  const unknown = Object.keys(record).filter((key) => !KEYS.includes(key))
  if (unknown.length > 0) fail(file, `${at} has unknown field ${unknown.map((key) => JSON.stringify(key)).join(', ')}`)
  const { methods, path, access } = record
  if (!Array.isArray(methods) || methods.length === 0 || !methods.every((m): m is RuleMethod => typeof m === 'string' && (METHODS as readonly string[]).includes(m))) {
    fail(file, `${at}: methods must be a non-empty list of ${METHODS.join(', ')} (got ${JSON.stringify(methods)})`)
  }
  if (new Set(methods).size !== methods.length || (methods.includes('*') && methods.length > 1)) fail(file, `${at}: methods must not repeat, and "*" stands alone`)
  if (typeof path !== 'string') fail(file, `${at}: path must be a string such as "/api/reports/*"`)
  const problem = pathProblem(path)
  if (problem !== undefined) {
    fail(file, `${at}: path ${problem}; write it exact (/api/reports/summary), with parameters (/api/reports/:id) or as a prefix (/api/reports/*) (got ${JSON.stringify(path)})`)
  }
  if (access !== 'public' && access !== 'session' && (typeof access !== 'string' || !isRoleAccess(access))) {
    fail(file, `${at}: access must be "public", "session" or "role:<name>" (a lower-case name: letters, digits, _ and -) (got ${JSON.stringify(access)})`)
  }
  return Object.freeze({ methods: Object.freeze([...methods]), path, access: access as Access })
}

function isRest (segments: readonly string[], i: number): boolean {
  return segments[i] === '*' && i === segments.length - 1
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
    if (isRest(left, i)) return y !== undefined
    if (isRest(right, i)) return x !== undefined
    if (x === undefined || y === undefined) return x === y
    if (x !== y && !x.startsWith(':') && !y.startsWith(':')) return false
  }
}

/**
 * A pattern with its parameters' names dropped. Two patterns that both match a path are equally
 * specific (is-endpoint-accessible.ts: literal > parameter > `*`, segment by segment) exactly when
 * their shapes are the same.
 */
function shapeOf (pattern: string): string {
  return pattern.split('/').map((segment) => segment.startsWith(':') ? ':' : segment).join('/')
}

function methodsOf (rule: AccessRule): ReadonlyArray<Exclude<RuleMethod, '*'>> {
  return rule.methods.includes('*') ? EVERY_METHOD : rule.methods as ReadonlyArray<Exclude<RuleMethod, '*'>>
}

/**
 * The file's rules, checked against the built-in table: under `/api/`, clear of every built-in rule
 * but the catch-all (a built-in route keeps its own rule, whatever the method), and each the only
 * rule deciding its own requests (two entries of one shape sharing a method is an overlap).
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
  const entries = parsed.flatMap((entry: unknown, index) => {
    const rule = parseRule(file, index, entry)
    return rule.path.endsWith('/*') ? [{ index, rule }, { index, rule: Object.freeze({ ...rule, path: rule.path.slice(0, -2) }) }] : [{ index, rule }]
  })
  const reserved = builtIn.filter((rule) => rule.path !== APP_ROUTE)
  for (const { index, rule } of entries) {
    const other = reserved.find((builtInRule) => patternsOverlap(rule.path, builtInRule.path))
    if (other !== undefined) fail(file, `entry ${index} (${rule.path}) overlaps the built-in rule for ${other.path}: built-in routes keep their own rules`)
  }
  for (const [i, { index, rule }] of entries.entries()) {
    for (const { index: otherIndex, rule: other } of entries.slice(0, i)) {
      if (otherIndex === index || shapeOf(other.path) !== shapeOf(rule.path)) continue
      const shared = methodsOf(rule).filter((method) => methodsOf(other).includes(method))
      if (shared.length > 0) {
        fail(file, `entry ${index} (${shared.join(',')} ${rule.path}) overlaps entry ${otherIndex} (${other.path}): one request, two rules`)
      }
    }
  }
  return entries.map(({ rule }) => rule)
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
