import type { AccessRule } from './rules.ts'

export interface RequestFacts {
  method: string
  /** A normalised path, or the pattern of the route the request matched. */
  path: string
  /** The signed-in caller, with the role better-auth holds for them, if any. */
  identity: Record<string, unknown> & { role?: unknown } | null
}

export type Decision =
  | { allowed: true, rule: AccessRule }
  | { allowed: false, status: 401 | 403 | 404, reason: 'no_rule' | 'session_required' | 'role_required', rule: AccessRule | null }

function methodMatches (rule: AccessRule, method: string): boolean {
  const wanted = method === 'HEAD' ? 'GET' : method
  return rule.methods.some((m) => m === '*' || m === wanted)
}

/**
 * Whether a rule's pattern covers a path: exactly, segment by segment with a route parameter (`:id`)
 * standing for any one non-empty segment, or as a prefix on a slash boundary (`/api/*`).
 */
export function patternMatches (pattern: string, path: string): boolean {
  if (pattern === path) return true
  const wildcard = pattern.endsWith('/*')
  if (wildcard && !pattern.includes(':')) return path.startsWith(pattern.slice(0, -1)) // keeps the slash: '/api/'
  if (!wildcard && !pattern.includes(':')) return false
  const fixed = (wildcard ? pattern.slice(0, -2) : pattern).split('/')
  const segments = path.split('/')
  if (wildcard ? segments.length <= fixed.length : segments.length !== fixed.length) return false
  return fixed.every((segment, i) => segment === segments[i] || (segment.startsWith(':') && segments[i] !== ''))
}

// Per segment, as find-my-way ranks them: a literal beats a parameter, a parameter beats the rest (`*`).
const LITERAL = 2
const PARAMETER = 1
const REST = 0

/**
 * How specific a pattern is, compared left to right: the same pattern as the path beats everything;
 * then, at the first segment where two patterns differ in kind, a literal beats a parameter and a
 * parameter beats a trailing `*`. So an exact path beats any prefix and a longer prefix a shorter one.
 */
function specificity (pattern: string, path: string): readonly number[] {
  if (pattern === path) return [Number.MAX_SAFE_INTEGER]
  return pattern.split('/').slice(1).map((segment, i, all) => segment === '*' && i === all.length - 1 ? REST : segment.startsWith(':') ? PARAMETER : LITERAL)
}

function compareSpecificity (a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i] !== b[i]) return a[i] - b[i]
  }
  return a.length - b.length
}

/**
 * Every rule that decides `method path`, at the highest specificity. More than one is an overlap
 * (the coverage check refuses to start on it); none is a gap.
 */
export function matchingRules (rules: readonly AccessRule[], method: string, path: string): AccessRule[] {
  let best: readonly number[] = []
  let found: AccessRule[] = []
  for (const rule of rules) {
    if (!methodMatches(rule, method) || !patternMatches(rule.path, path)) continue
    const score = specificity(rule.path, path)
    const order = found.length === 0 ? 1 : compareSpecificity(score, best)
    if (order > 0) {
      best = score
      found = [rule]
    } else if (order === 0) {
      found.push(rule)
    }
  }
  return found
}

/** The access decision: pure, default deny. */
export function isEndpointAccessible (rules: readonly AccessRule[], facts: RequestFacts): Decision {
  const found = matchingRules(rules, facts.method, facts.path)
  if (found.length !== 1) return { allowed: false, status: 404, reason: 'no_rule', rule: null }
  return decideByRule(found[0], facts.identity)
}

/** What one rule says of a caller (`null`: anonymous). */
export function decideByRule (rule: AccessRule, identity: RequestFacts['identity']): Decision {
  if (rule.access === 'public') return { allowed: true, rule }
  if (identity === null) return { allowed: false, status: 401, reason: 'session_required', rule }
  if (rule.access === 'session') return { allowed: true, rule }
  const role = rule.access.slice('role:'.length)
  const held = typeof identity.role === 'string' ? identity.role.split(',').map((r) => r.trim()) : []
  return held.includes(role) ? { allowed: true, rule } : { allowed: false, status: 403, reason: 'role_required', rule }
}

export interface RouteSummary {
  method: string
  url: string
}

/**
 * The coverage proof: every registered route matches exactly one rule. Returns the problems, one
 * sentence each naming the route; empty when the table covers the gateway.
 */
export function coverageProblems (rules: readonly AccessRule[], routes: readonly RouteSummary[]): string[] {
  const problems: string[] = []
  for (const route of routes) {
    if (route.method === 'OPTIONS') continue
    const found = matchingRules(rules, route.method, route.url)
    if (found.length === 0) problems.push(`route ${route.method} ${route.url} matches no access rule`)
    else if (found.length > 1) problems.push(`route ${route.method} ${route.url} matches ${found.length} access rules (${found.map((r) => `${r.methods.join(',')} ${r.path}`).join('; ')})`)
  }
  return problems
}

/**
 * The decision for an anonymous caller, memoised: it depends only on the route pattern and the
 * method, so each pair is decided once.
 */
export function anonymousDecisions (rules: readonly AccessRule[]): (method: string, route: string) => Decision {
  const decided = new Map<string, Decision>()
  return (method, route) => {
    const key = `${method} ${route}`
    let decision = decided.get(key)
    if (decision === undefined) {
      decision = isEndpointAccessible(rules, { method, path: route, identity: null })
      decided.set(key, decision)
    }
    return decision
  }
}
