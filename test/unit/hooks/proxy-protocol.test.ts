import { describe, expect, it } from 'vitest';
import { ProxyProtocolParser, encodeProxyV2, MAX_V2_LENGTH, V2_SIGNATURE } from '../../../src/engine/protocol/proxy-protocol.js';

const feed = (chunks: Buffer[]) => {
  const p = new ProxyProtocolParser();
  let r;
  for (const c of chunks) r = p.push(c);
  return r;
};

describe('PROXY protocol v1', () => {
  it('parses TCP4 and keeps the bytes after the header', () => {
    const r = feed([Buffer.from('PROXY TCP4 198.18.0.1 198.18.0.2 56324 443\r\nGET / HTTP/1.1\r\n')]);
    expect(r!.header).toEqual({
      version: 1,
      command: 'PROXY',
      protocol: 'tcp4',
      source: { address: '198.18.0.1', port: 56324 },
      destination: { address: '198.18.0.2', port: 443 },
      tlvs: [],
    });
    expect(r!.rest.toString()).toBe('GET / HTTP/1.1\r\n');
  });

  it('parses TCP6 and UNKNOWN', () => {
    expect(feed([Buffer.from('PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n')])!.header.source).toEqual({ address: '2001:db8::1', port: 1 });
    expect(feed([Buffer.from('PROXY UNKNOWN\r\n')])!.header).toMatchObject({ command: 'LOCAL', protocol: 'unknown' });
  });

  it('waits for more bytes across chunk boundaries, one byte at a time', () => {
    const text = Buffer.from('PROXY TCP4 198.18.0.1 198.18.0.2 1 2\r\nX');
    const p = new ProxyProtocolParser();
    for (let i = 0; i < text.length - 2; i++) expect(p.push(text.subarray(i, i + 1))).toBeUndefined();
    const r = p.push(text.subarray(text.length - 2));
    expect(r!.rest.toString()).toBe('X');
  });

  it('refuses lines over 107 bytes, bad ports and non-PROXY starts', () => {
    expect(() => feed([Buffer.from(`PROXY TCP4 ${'1'.repeat(120)}`)])).toThrow(/longer than 107/);
    expect(() => feed([Buffer.from('PROXY TCP4 198.18.0.1 198.18.0.2 70000 2\r\n')])).toThrow(/port 70000/);
    expect(() => feed([Buffer.from('GET / HTTP/1.1\r\n')])).toThrow(/no PROXY signature/);
  });
});

describe('PROXY protocol v2', () => {
  it('round-trips IPv4 with TLVs, split anywhere', () => {
    const header = encodeProxyV2({
      source: { address: '198.18.0.7', port: 40000 },
      destination: { address: '198.18.0.1', port: 3128 },
      tlvs: [
        { type: 0x02, value: Buffer.from('example.com') },
        { type: 0xe0, value: Buffer.from([1, 2, 3]) },
      ],
    });
    const data = Buffer.concat([header, Buffer.from('rest')]);
    for (const cut of [1, 11, 12, 15, 16, 20, data.length - 1]) {
      const r = feed([data.subarray(0, cut), data.subarray(cut)]);
      expect(r!.header).toMatchObject({ version: 2, command: 'PROXY', protocol: 'tcp4', source: { address: '198.18.0.7', port: 40000 } });
      expect(r!.header.tlvs.map((t) => [t.type, t.value.toString('hex')])).toEqual([
        [2, Buffer.from('example.com').toString('hex')],
        [0xe0, '010203'],
      ]);
      expect(r!.rest.toString()).toBe('rest');
    }
  });

  it('round-trips IPv6 (compressed the RFC 5952 way)', () => {
    const r = feed([encodeProxyV2({ source: { address: '2001:db8::1', port: 1 }, destination: { address: '2001:db8:0:1::2', port: 2 } })]);
    expect(r!.header).toMatchObject({ protocol: 'tcp6', source: { address: '2001:db8::1', port: 1 }, destination: { address: '2001:db8:0:1::2', port: 2 } });
  });

  it('LOCAL has no addresses', () => {
    const buf = encodeProxyV2({ source: { address: '198.18.0.7', port: 1 }, destination: { address: '198.18.0.1', port: 2 } });
    buf[12] = 0x20;
    expect(feed([buf])!.header).toMatchObject({ command: 'LOCAL', source: undefined });
  });

  it('checks lengths before reading', () => {
    const head = Buffer.alloc(16);
    V2_SIGNATURE.copy(head);
    head[12] = 0x21;
    head[13] = 0x11;
    head.writeUInt16BE(MAX_V2_LENGTH + 1, 14);
    expect(() => feed([head])).toThrow(/length/);
    head.writeUInt16BE(4, 14);
    expect(() => feed([Buffer.concat([head, Buffer.alloc(4)])])).toThrow(/INET block shorter/);
    const bad = encodeProxyV2({
      source: { address: '198.18.0.7', port: 1 },
      destination: { address: '198.18.0.1', port: 2 },
      tlvs: [{ type: 1, value: Buffer.from('abc') }],
    });
    bad.writeUInt16BE(9, 16 + 12 + 1); // TLV claims 9 bytes, has 3
    expect(() => feed([bad])).toThrow(/TLV 0x1 longer/);
    head[12] = 0x31;
    expect(() => feed([head])).toThrow(/version 3/);
  });
});
