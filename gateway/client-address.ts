import { BlockList, isIP } from 'node:net'
import type { TrustProxy } from '../shared/config.ts'

/** What the address is read from: Fastify's resolved `ip` and the connection it came over. */
export interface AddressedRequest {
  readonly ip: string
  readonly socket: { readonly remoteAddress?: string | undefined }
}

/** The host and protocol the gateway tells auth-core and the upstreams the client used. */
export interface PublicFacts {
  host: string
  protocol: string
}

// Dotted decimal without leading zeros: already canonical, so the common case costs one test.
const OCTET = '(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)'
const CANONICAL_IPV4 = new RegExp(`^(?:${OCTET}\\.){3}${OCTET}$`)
const IPV4_WITH_PORT = /^(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}):\d{1,5}$/
const PORT = /^:\d{1,5}$/
// The WHATWG serialisation of an IPv4-mapped address is always this hex form.
const MAPPED = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/
// RFC 7239's token for an address nobody knows; only a request whose socket is already gone gets it.
const UNKNOWN = 'unknown'

/**
 * The one spelling of an address, or `null` for anything that is not one: brackets, an IPv4 port
 * and an IPv6 zone are dropped, IPv4-mapped IPv6 becomes IPv4, IPv6 is lower-cased and compressed.
 * Otherwise every spelling of an address would be a rate-limit budget of its own.
 */
export function canonicalAddress (value: string): string | null {
  if (CANONICAL_IPV4.test(value)) return value
  let address = value
  if (address.startsWith('[')) {
    const end = address.indexOf(']')
    if (end === -1 || (end + 1 < address.length && !PORT.test(address.slice(end + 1)))) return null
    address = address.slice(1, end)
  } else {
    const withPort = IPV4_WITH_PORT.exec(address)
    if (withPort !== null) address = withPort[1]
  }
  // A zone names an interface of the host that wrote it: meaningless here, and free to vary.
  const zone = address.indexOf('%')
  if (zone !== -1 && address.includes(':')) address = address.slice(0, zone)
  const family = isIP(address)
  if (family === 4) return address
  if (family !== 6) return null
  let host: string
  try {
    host = new URL(`http://[${address}]`).hostname.slice(1, -1)
  } catch {
    return null
  }
  const mapped = MAPPED.exec(host)
  if (mapped === null) return host
  const high = parseInt(mapped[1], 16)
  const low = parseInt(mapped[2], 16)
  return `${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`
}

const resolved = new WeakMap<AddressedRequest, string>()

/**
 * The client address the gateway counts and vouches for, canonical. An `ip` that is not an address
 * falls back to the connecting peer: a trusted proxy always writes a real address, so a garbage
 * `X-Forwarded-For` entry was written by the client, and must not buy it a fresh budget.
 */
export function clientAddress (request: AddressedRequest): string {
  const ip = request.ip
  if (CANONICAL_IPV4.test(ip)) return ip
  let address = resolved.get(request)
  if (address === undefined) {
    address = (typeof ip === 'string' ? canonicalAddress(ip) : null) ?? canonicalAddress(request.socket.remoteAddress ?? '') ?? UNKNOWN
    resolved.set(request, address)
  }
  return address
}

/** The host and protocol of `PUBLIC_URL`, never those a client's `X-Forwarded-Host`/`-Proto` claimed. */
export function publicFacts (publicUrl: string): PublicFacts {
  const url = new URL(publicUrl)
  return { host: url.host, protocol: url.protocol.slice(0, -1) }
}

/**
 * Whether the connecting peer is a proxy `TRUST_PROXY` trusts: any peer for a hop count (the
 * nearest hop is the first trusted), one of the listed addresses or CIDRs, or none for `false`.
 */
export function trustedPeer (trustProxy: TrustProxy): (peer: string | undefined) => boolean {
  if (trustProxy === false) return () => false
  if (typeof trustProxy === 'number') return () => true
  const trusted = new BlockList()
  for (const entry of trustProxy) {
    const slash = entry.indexOf('/')
    const address = slash === -1 ? entry : entry.slice(0, slash)
    const family = isIP(address) === 6 ? 'ipv6' : 'ipv4'
    if (slash === -1) trusted.addAddress(address, family)
    else trusted.addSubnet(address, Number(entry.slice(slash + 1)), family)
  }
  return (peer) => {
    const address = canonicalAddress(peer ?? '')
    return address !== null && trusted.check(address, isIP(address) === 6 ? 'ipv6' : 'ipv4')
  }
}
