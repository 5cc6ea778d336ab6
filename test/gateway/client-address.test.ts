import t from 'tap'
import { canonicalAddress, clientAddress, publicFacts } from '../../gateway/client-address.ts'

const SPELLINGS: Array<[string, string]> = [
  ['127.0.0.1', '127.0.0.1'],
  ['9.9.9.9', '9.9.9.9'],
  ['::ffff:9.9.9.9', '9.9.9.9'],
  ['::FFFF:9.9.9.9', '9.9.9.9'],
  ['::ffff:909:909', '9.9.9.9'],
  ['0:0:0:0:0:ffff:909:909', '9.9.9.9'],
  ['0000:0000:0000:0000:0000:FFFF:0909:0909', '9.9.9.9'],
  ['[::ffff:9.9.9.9]', '9.9.9.9'],
  ['[::ffff:9.9.9.9]:443', '9.9.9.9'],
  ['9.9.9.9:1234', '9.9.9.9'],
  ['::ffff:0.0.0.0', '0.0.0.0'],
  ['::ffff:255.255.255.255', '255.255.255.255'],
  ['2001:DB8::1', '2001:db8::1'],
  ['2001:db8:0:0:0:0:0:1', '2001:db8::1'],
  ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
  ['[2001:db8::1]', '2001:db8::1'],
  ['[2001:DB8::1]:8080', '2001:db8::1'],
  ['fe80::1%eth0', 'fe80::1'],
  ['fe80::1%2', 'fe80::1'],
  ['::1', '::1'],
  ['0:0:0:0:0:0:0:1', '::1'],
  ['::', '::'],
  // Not IPv4-mapped: other prefixes stay IPv6.
  ['::ffff:0:9.9.9.9', '::ffff:0:909:909'],
  ['64:ff9b::9.9.9.9', '64:ff9b::909:909']
]

const NOT_ADDRESSES = ['', 'not-an-ip', 'not-an-ip-7', 'unknown', '_hidden', '01.2.3.4', '1.2.3', '1.2.3.256', '9.9.9.9:', '9.9.9.9:x', '[9.9.9.9', '[::1]x', '[::1]:', '::ffff:9.9.9.9:80', 'localhost', '1.2.3.4 5.6.7.8', '2001:db8::g', '::1::']

t.test('every spelling of an address → its one canonical spelling', async (t) => {
  for (const [spelling, canonical] of SPELLINGS) t.equal(canonicalAddress(spelling), canonical, spelling)
})

t.test('what is not an address → null', async (t) => {
  for (const value of NOT_ADDRESSES) t.equal(canonicalAddress(value), null, JSON.stringify(value))
})

t.test('clientAddress: the resolved ip, canonical', async (t) => {
  for (const [spelling, canonical] of SPELLINGS) t.equal(clientAddress({ ip: spelling, socket: { remoteAddress: '10.0.0.1' } }), canonical, spelling)
})

t.test('clientAddress: a non-address falls back to the socket, canonical too', async (t) => {
  for (const value of NOT_ADDRESSES) {
    t.equal(clientAddress({ ip: value, socket: { remoteAddress: '127.0.0.1' } }), '127.0.0.1', JSON.stringify(value))
    t.equal(clientAddress({ ip: value, socket: { remoteAddress: '::ffff:127.0.0.1' } }), '127.0.0.1', `${JSON.stringify(value)} over a dual-stack socket`)
    t.equal(clientAddress({ ip: value, socket: { remoteAddress: '2001:DB8:0:0::5' } }), '2001:db8::5', `${JSON.stringify(value)} over IPv6`)
  }
  t.equal(clientAddress({ ip: 'not-an-ip', socket: {} }), 'unknown', 'a closed socket has no address either')
})

t.test('clientAddress: one answer per request, however often asked', async (t) => {
  const request = { ip: '::FFFF:9.9.9.9', socket: { remoteAddress: '127.0.0.1' } }
  t.equal(clientAddress(request), '9.9.9.9')
  t.equal(clientAddress(request), '9.9.9.9')
})

t.test('publicFacts: the host and protocol of PUBLIC_URL', async (t) => {
  t.same(publicFacts('http://localhost:8000'), { host: 'localhost:8000', protocol: 'http' })
  t.same(publicFacts('https://docs.example.com'), { host: 'docs.example.com', protocol: 'https' })
  t.same(publicFacts('https://Docs.Example.com:443/base/'), { host: 'docs.example.com', protocol: 'https' })
})
