import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalCidr, formatIp, parseCidr, parseIp } from '../../src/core/cidr.js';
import { RouteTable, type RouteEntry } from '../../src/core/route-table.js';

interface TestRoute extends RouteEntry {
  comment: string;
}

function route(id: string, vnetId: string, network: string, tunnelId = `t-${id}`): TestRoute {
  return { id, vnetId, network, tunnelId, comment: `route ${id}` };
}

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

describe('cidr helpers', () => {
  it('canonicalises and reports host bits', () => {
    expect(parseCidr('10.1.2.3/16')).toMatchObject({ family: 4, network: '10.1.0.0/16', prefixLength: 16, hostBitsSet: true });
    expect(parseCidr('10.1.0.0/16').hostBitsSet).toBe(false);
    expect(parseCidr('0.0.0.0/0').network).toBe('0.0.0.0/0');
    expect(parseCidr('10.255.255.255/9').network).toBe('10.128.0.0/9');
    expect(parseCidr('2001:DB8:0:0::1/32')).toMatchObject({ family: 6, network: '2001:db8::/32', hostBitsSet: true });
    expect(canonicalCidr('2001:0db8:0000:0000:0001:0000:0000:0001/128')).toBe('2001:db8::1:0:0:1/128');
    expect(canonicalCidr('::/0')).toBe('::/0');
  });

  it('turns IPv4-mapped IPv6 into IPv4', () => {
    expect(canonicalCidr('::ffff:10.0.0.0/104')).toBe('10.0.0.0/8');
    expect(canonicalCidr('::ffff:0:0/96')).toBe('0.0.0.0/0');
    expect(canonicalCidr('::ffff:0:0/95')).toBe('::fffe:0:0/95');
    expect(parseIp('::ffff:10.1.2.3')).toMatchObject({ family: 4, address: '10.1.2.3' });
    expect(parseIp('::10.1.2.3')).toMatchObject({ family: 6, address: '::a01:203' }); // IPv4-compatible is not mapped
    expect(parseIp('64:ff9b::198.18.0.1')).toMatchObject({ family: 6, address: '64:ff9b::c612:1' });
  });

  it('refuses what Go refuses', () => {
    for (const bad of [
      '10.1/16',
      '010.0.0.0/8',
      '0x0a.0.0.0/8',
      '10.0.0.0/33',
      '10.0.0.0/',
      '10.0.0.0',
      '10.0.0.0/08',
      '10.0.0.0/-1',
      '::/129',
      'fe80::%eth0/64',
      '',
      '/8',
      'x/8',
      ' 10.0.0.0/8',
    ]) {
      expect(
        code(() => parseCidr(bad)),
        bad,
      ).toBe('OXY_ERR_INVALID_CIDR');
    }
    for (const bad of ['10.1', '1.2.3.4.5', 'fe80::1%eth0', '', '10.0.0.0/8', 'localhost', '::ffff:010.0.0.1', '::ffff:1.2.3', '1.2.3.4::', '::1.2.3.4:5']) {
      expect(
        code(() => parseIp(bad)),
        bad,
      ).toBe('OXY_ERR_INVALID_IP');
    }
  });

  it('formats bytes', () => {
    expect(formatIp(Uint8Array.of(198, 18, 0, 1))).toBe('198.18.0.1');
    expect(formatIp(parseIp('2001:db8::1').bytes)).toBe('2001:db8::1');
  });
});

describe('RouteTable hand cases', () => {
  const table = new RouteTable<TestRoute>([
    route('default4', 'a', '0.0.0.0/0'),
    route('ten', 'a', '10.0.0.0/8'),
    route('ten-one', 'a', '10.1.0.0/16'),
    route('ten-one-two', 'a', '10.1.2.0/24'),
    route('host4', 'a', '10.1.2.3/32'),
    route('top4', 'a', '255.255.255.255/32'),
    route('doc6', 'a', '2001:db8::/32'),
    route('host6', 'a', '2001:db8::1/128'),
    route('top6', 'a', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128'),
    route('ten-b', 'b', '10.0.0.0/8', 'tunnel-b'),
    route('only6', 'c', '::/0'),
  ]);
  const id = (vnet: string, ip: string | Uint8Array): string | undefined => table.lookup(vnet, ip)?.id;

  it('counts routes and keeps their fields', () => {
    expect(table.size).toBe(11);
    expect(table.lookup('a', '10.9.9.9')?.comment).toBe('route ten');
  });

  it('matches the longest prefix among nested ones', () => {
    expect(id('a', '10.1.2.3')).toBe('host4');
    expect(id('a', '10.1.2.4')).toBe('ten-one-two');
    expect(id('a', '10.1.2.2')).toBe('ten-one-two');
    expect(id('a', '10.1.3.0')).toBe('ten-one');
    expect(id('a', '10.1.1.255')).toBe('ten-one');
    expect(id('a', '10.2.0.0')).toBe('ten');
    expect(id('a', '10.255.255.255')).toBe('ten');
    expect(id('a', '11.0.0.0')).toBe('default4');
    expect(id('a', '9.255.255.255')).toBe('default4');
    expect(id('a', '0.0.0.0')).toBe('default4');
  });

  it('handles host routes at the top of the address space', () => {
    expect(id('a', '255.255.255.255')).toBe('top4');
    expect(id('a', '255.255.255.254')).toBe('default4');
    expect(id('a', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff')).toBe('top6');
    expect(id('a', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe')).toBeUndefined();
    expect(id('a', '2001:db8::1')).toBe('host6');
    expect(id('a', '2001:db8::2')).toBe('doc6');
    expect(id('a', '2001:db8::')).toBe('doc6');
    expect(id('a', '2001:db9::')).toBeUndefined();
  });

  it('keeps vnets apart: the same CIDR in two vnets goes to different tunnels', () => {
    expect(table.lookup('a', '10.3.0.0')?.tunnelId).toBe('t-ten');
    expect(table.lookup('b', '10.3.0.0')?.tunnelId).toBe('tunnel-b');
    expect(id('b', '10.1.2.3')).toBe('ten-b');
    expect(id('b', '11.0.0.0')).toBeUndefined();
    expect(id('unknown', '10.1.2.3')).toBeUndefined();
  });

  it('never mixes IPv4 and IPv6', () => {
    expect(id('c', '10.1.2.3')).toBeUndefined(); // ::/0 is IPv6 only
    expect(id('c', '::a01:203')).toBe('only6'); // IPv4-compatible is plain IPv6
    expect(id('a', '::')).toBeUndefined(); // 0.0.0.0/0 is IPv4 only
    expect(id('a', '::a01:203')).toBeUndefined();
  });

  it('looks up IPv4-mapped IPv6 destinations as IPv4', () => {
    expect(id('a', '::ffff:10.1.2.3')).toBe('host4');
    const mapped = new Uint8Array(16);
    mapped.set([0xff, 0xff, 10, 1, 2, 4], 10);
    expect(id('a', mapped)).toBe('ten-one-two');
    expect(id('c', mapped)).toBeUndefined();
  });

  it('takes bytes, and bytes inside a packet', () => {
    expect(id('a', Uint8Array.of(10, 1, 2, 3))).toBe('host4');
    expect(id('a', parseIp('2001:db8::1').bytes)).toBe('host6');
    const packet = new Uint8Array(40);
    packet.set([10, 1, 9, 9], 16);
    expect(table.lookupAt('a', packet, 16, 4)?.id).toBe('ten-one');
    packet.set(parseIp('2001:db8::1').bytes, 24);
    expect(table.lookupAt('a', packet, 24, 16)?.id).toBe('host6');
  });

  it('refuses bad input', () => {
    expect(code(() => table.lookup('a', '10.1'))).toBe('OXY_ERR_INVALID_IP');
    expect(code(() => table.lookup('a', new Uint8Array(5)))).toBe('OXY_ERR_INVALID_IP');
    expect(code(() => new RouteTable([route('x', 'a', '10.1.2.3/16')]))).toBe('OXY_ERR_INVALID_CIDR');
    expect(code(() => new RouteTable([route('x', 'a', '10.0.0.0/8'), route('y', 'a', '10.0.0.0/8')]))).toBe('OXY_ERR_ROUTE_CONFLICT');
    // The same network spelled two ways is still one network.
    expect(code(() => new RouteTable([route('x', 'a', '::ffff:10.0.0.0/104'), route('y', 'a', '10.0.0.0/8')]))).toBe('OXY_ERR_ROUTE_CONFLICT');
  });

  it('works empty', () => {
    const empty = new RouteTable();
    expect(empty.size).toBe(0);
    expect(empty.lookup('a', '10.0.0.1')).toBeUndefined();
  });
});

// ---- property tests against a linear scan ----

const VNETS = ['vnet-a', 'vnet-b', 'vnet-c'];

/** Low-entropy bytes so random prefixes nest and overlap often. */
const byteArb = fc.oneof(fc.constantFrom(0, 1, 10, 128, 255), fc.integer({ min: 0, max: 255 }));

const v4CidrArb = fc
  .tuple(fc.array(byteArb, { minLength: 4, maxLength: 4 }), fc.integer({ min: 0, max: 32 }))
  .map(([bytes, len]) => `${bytes.join('.')}/${len}`);

const v6CidrArb = fc
  .tuple(fc.array(byteArb, { minLength: 16, maxLength: 16 }), fc.integer({ min: 0, max: 128 }))
  .map(([bytes, len]) => `${formatIp(Uint8Array.from(bytes))}/${len}`);

const routesArb = fc
  .uniqueArray(
    fc.record({
      vnetId: fc.constantFrom(...VNETS),
      network: fc.oneof({ weight: 3, arbitrary: v4CidrArb }, { weight: 2, arbitrary: v6CidrArb }).map(canonicalCidr),
    }),
    { maxLength: 60, selector: (r) => `${r.vnetId} ${r.network}` },
  )
  .map((specs) => specs.map((s, i) => route(`r${i}`, s.vnetId, s.network, `tunnel-${i % 7}`)));

function toBig(bytes: Uint8Array): bigint {
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return v;
}

function fromBig(v: bigint, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = length - 1; i >= 0; i--, v >>= 8n) out[i] = Number(v & 0xffn);
  return out;
}

function oracle(routes: TestRoute[], vnetId: string, ip: Uint8Array): TestRoute | undefined {
  const addr = parseIp(formatIp(ip)); // unmaps ::ffff:a.b.c.d
  const value = toBig(addr.bytes);
  let best: TestRoute | undefined;
  let bestLen = -1;
  for (const r of routes) {
    if (r.vnetId !== vnetId) continue;
    const c = parseCidr(r.network);
    if (c.family !== addr.family) continue;
    const hostBits = BigInt(c.bytes.length * 8 - c.prefixLength);
    if (value >> hostBits === toBig(c.bytes) >> hostBits && c.prefixLength > bestLen) {
      best = r;
      bestLen = c.prefixLength;
    }
  }
  return best;
}

/** Every route's first and last address and their neighbours: where range boundaries are. */
function edgeAddresses(routes: TestRoute[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const r of routes) {
    const c = parseCidr(r.network);
    const bits = c.bytes.length * 8;
    const start = toBig(c.bytes);
    const end = start + (1n << BigInt(bits - c.prefixLength)) - 1n;
    for (const v of [start - 1n, start, start + 1n, end - 1n, end, end + 1n]) {
      if (v >= 0n && v < 1n << BigInt(bits)) out.push(fromBig(v, c.bytes.length));
    }
  }
  return out;
}

const addrArb = fc.oneof(
  fc.array(byteArb, { minLength: 4, maxLength: 4 }).map((b) => Uint8Array.from(b)),
  fc.array(byteArb, { minLength: 16, maxLength: 16 }).map((b) => Uint8Array.from(b)),
  fc.array(byteArb, { minLength: 4, maxLength: 4 }).map((b) => Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, ...b])),
);

describe('RouteTable against a linear scan', () => {
  it('agrees on random and boundary addresses, as bytes, text and in a packet', () => {
    fc.assert(
      fc.property(routesArb, fc.array(addrArb, { maxLength: 40 }), (routes, randomAddrs) => {
        const table = new RouteTable(routes);
        expect(table.size).toBe(routes.length);
        const buf = new Uint8Array(64);
        for (const ip of [...randomAddrs, ...edgeAddresses(routes)]) {
          for (const vnetId of [...VNETS, 'vnet-none']) {
            const want = oracle(routes, vnetId, ip);
            expect(table.lookup(vnetId, ip)).toBe(want);
            expect(table.lookup(vnetId, formatIp(ip))).toBe(want);
            buf.set(ip, 7);
            expect(table.lookupAt(vnetId, buf, 7, ip.length as 4 | 16)).toBe(want);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('agrees when the same CIDRs sit in every vnet with different tunnels', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.oneof(v4CidrArb, v6CidrArb).map(canonicalCidr), { maxLength: 30 }), (networks) => {
        const routes = VNETS.flatMap((vnetId, v) => networks.map((n, i) => route(`${vnetId}-${i}`, vnetId, n, `tunnel-${v}`)));
        const table = new RouteTable(routes);
        for (const ip of edgeAddresses(routes)) {
          for (const [v, vnetId] of VNETS.entries()) {
            const got = table.lookup(vnetId, ip);
            expect(got).toBe(oracle(routes, vnetId, ip));
            if (got !== undefined) expect(got.tunnelId).toBe(`tunnel-${v}`);
          }
        }
      }),
      { numRuns: 100 },
    );
  });
});
