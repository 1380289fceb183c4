import ipaddr from 'ipaddr.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isIP } from 'node:net';
import { formatAddress, formatEndpoint, parseAddress } from '../../../src/engine/packet/index.js';

describe('address text helpers', () => {
  it.each([
    ['198.18.0.1', '198.18.0.1'],
    ['0.0.0.0', '0.0.0.0'],
    ['255.255.255.255', '255.255.255.255'],
    ['2001:db8::1', '2001:db8::1'],
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // first of equal runs (RFC 5952 §4.2.3)
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // a single zero word stays (§4.2.2)
    ['::', '::'],
    ['::1', '::1'],
    ['::ffff:198.18.0.1', '::ffff:198.18.0.1'],
    ['64:ff9b::198.18.0.1', '64:ff9b::c612:1'],
  ])('%s → %s', (text, canonical) => {
    expect(formatAddress(parseAddress(text))).toBe(canonical);
  });

  it.each([
    '',
    '1.2.3',
    '1.2.3.256',
    '01.2.3.4',
    '1.2.3.00',
    '1.2.3.4.',
    '.1.2.3',
    '1..2.3',
    '1.2.3.4.5',
    '1.2.3.0x4',
    ' 1.2.3.4',
    '1.2.3.1000',
    '1.2.3.-1',
    '::ffff:1.2.3.04',
    '1::2::3',
    '1:2:3:4:5:6:7:8:9',
    '2001:db8::g',
    ':::',
    '1:2:3:4:5:6:7::8',
  ])('refuses %j', (text) => expect(() => parseAddress(text)).toThrow(RangeError));

  it("reads dotted text as ipaddr.js's strict four-part decimal does (Go's net.ParseIP)", () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[0-9.]{0,16}$/), (text) => {
        const strict = ipaddr.IPv4.isValidFourPartDecimal(text);
        if (!strict) expect(() => parseAddress(text)).toThrow(RangeError);
        else expect([...parseAddress(text)]).toEqual(ipaddr.IPv4.parse(text).octets);
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 4, maxLength: 4 }), (bytes) => {
        expect(parseAddress(formatAddress(bytes)).equals(Buffer.from(bytes))).toBe(true);
      }),
    );
  });

  it('agrees with Node on what an address is and round-trips any 16 bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (bytes) => {
        const text = formatAddress(bytes);
        expect(isIP(text)).toBe(6);
        expect(parseAddress(text).equals(Buffer.from(bytes))).toBe(true);
      }),
    );
    // WHATWG URL serialises IPv6 hosts the RFC 5952 way, bar the dotted IPv4-mapped form.
    fc.assert(
      fc.property(fc.ipV6(), (text) => {
        const canonical = formatAddress(parseAddress(text));
        if (!canonical.startsWith('::ffff:')) expect(canonical).toBe(new URL(`http://[${text}]/`).hostname.slice(1, -1));
        expect(parseAddress(canonical).equals(parseAddress(text))).toBe(true);
      }),
    );
  });

  it('formats endpoints and offsets into packets', () => {
    expect(formatEndpoint(parseAddress('2001:db8::1'), 443)).toBe('[2001:db8::1]:443');
    expect(formatEndpoint(Buffer.from([0, 198, 18, 0, 9]), 80, 1, 4)).toBe('198.18.0.9:80');
  });
});
