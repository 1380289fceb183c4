// How the addon's QUIC connections class a peer's address, per connection from its path
// (cpp/quic-core.cc): loopback (IsLoopback: the 64 KiB profile) and near (IsNearAddress: the window
// counted in NEAR_CWND_UNIT by a connector, EDGE_NEAR_CWND_UNIT by an edge). Near once had a TS twin
// for the connector (transport/quic/config.ts isNearAddress, ipaddr.js's ranges); connectors now
// pass `nearCwndUnit` and the addon decides, so the C++ is the only copy. Loopback keeps a TS twin
// (isLoopbackAddress: the payload a connector offers, for quiche too), held here to the same answers.
// Each range's first and last addresses and their neighbours, IPv4-mapped forms, odd spellings.
import { describe, expect, it } from 'vitest';
import { native, nativeAvailable } from '../../../src/engine/native/binding.js';
import { isLoopbackAddress } from '../../../src/engine/transport/quic/config.js';

const NEAR = [
  ...['10.0.0.0', '10.255.255.255', '172.16.0.0', '172.31.255.255', '192.168.0.0', '192.168.255.255'], // RFC 1918
  ...['198.18.0.0', '198.19.255.255'], // benchmarking (RFC 2544)
  ...['169.254.0.0', '169.254.255.255'], // IPv4 link-local
  ...['::ffff:10.0.0.1', '::ffff:172.16.0.1', '::ffff:192.168.1.1', '::ffff:198.18.0.1', '::ffff:169.254.1.1', '::FFFF:a00:1'], // IPv4-mapped
  ...['fc00::', 'fc12::1', 'fd00::1', 'FD00::1', 'fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'], // unique local fc00::/7
  ...['fe80::', 'fe80::1', 'fe80::1%lo', 'FE80::1', 'febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff'], // IPv6 link-local fe80::/10
];
const FAR = [
  ...['9.255.255.255', '11.0.0.0', '172.15.255.255', '172.32.0.0', '192.167.255.255', '192.169.0.0'],
  ...['198.17.255.255', '198.20.0.0', '169.253.255.255', '169.255.0.0'],
  ...['100.64.0.1', '8.8.8.8', '0.0.0.0', '255.255.255.255', '224.0.0.1'], // shared (overlay VPNs), public, unspecified, broadcast, multicast
  ...['::ffff:1.2.3.4', '::ffff:172.32.0.1', '::10.0.0.1', '64:ff9b::a00:1', '2002:a00:1::'], // mapped public; IPv4-compatible, NAT64 and 6to4 forms of 10.0.0.1
  ...['fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'fe00::1', 'fec0::1', 'fc::1', '2001:db8::1', '2001:2::1', 'ff02::1', '::'],
];
const LOOPBACK = ['127.0.0.1', '127.0.0.0', '127.255.255.255', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1', '::FFFF:127.1.2.3', '::ffff:7f00:1'];
const NOT_LOOPBACK = ['126.255.255.255', '128.0.0.0', '::2', '::127.0.0.1', '::ffff:128.0.0.1', 'fe80::1'];

describe.skipIf(!nativeAvailable())('the addon classes peer addresses (IsLoopback, IsNearAddress)', () => {
  it.each([
    ...NEAR.map((a) => [a, { loopback: false, near: true }] as const),
    ...FAR.map((a) => [a, { loopback: false, near: false }] as const),
    ...LOOPBACK.map((a) => [a, { loopback: true, near: false }] as const),
    ...NOT_LOOPBACK.map((a) => [a, { loopback: false, near: a === 'fe80::1' }] as const),
  ])('%s', (address, kind) => {
    expect(native().addressKind(address)).toEqual(kind);
    // The connector's offer (either stack) and the addon's per-path profile agree.
    expect(isLoopbackAddress(address)).toBe(kind.loopback);
  });

  it('refuses what is not an address; the TS twin says not loopback', () => {
    for (const text of ['', 'localhost', '127.1', '10.0.0.256', 'fe80::1%', '::ffff:127.0.0.1.5']) {
      expect(() => native().addressKind(text), text).toThrow(/not an IP address/);
      expect(isLoopbackAddress(text), text).toBe(false);
    }
  });
});
