/**
 * PROXY protocol v1 (text) and v2 (binary) header parser, as an explicit state machine
 * over the chunks a connection delivers: push() chunks until it answers with the header
 * and the bytes that followed it. Sizes are checked before payloads are read (v1: 107
 * bytes at most; v2: 16 + the announced length, at most {@link MAX_V2_LENGTH}).
 * Spec: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt
 */
import type { Socket } from 'node:net';
import { OxyError } from '../../core/errors.js';
import type { ProxyHeader, ProxyTlv, SocketAddress } from '../hooks/types.js';

export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from('PROXY ');
const V1_MAX = 107;
/** Largest v2 address+TLV block accepted. */
export const MAX_V2_LENGTH = 4096;

const fail = (message: string) => new OxyError('OXY_ERR_PROXY_PROTOCOL', `Invalid PROXY protocol header: ${message}`);

export type ParseResult = { header: ProxyHeader; rest: Buffer } | undefined;

export class ProxyProtocolParser {
  #chunks: Buffer[] = [];
  #length = 0;
  #state: 'detect' | 'v1' | 'v2' = 'detect';

  /** Adds a chunk; returns the header once complete (and the bytes after it), undefined while more is needed; throws if invalid. */
  push(chunk: Buffer): ParseResult {
    this.#chunks.push(chunk);
    this.#length += chunk.length;
    const buf = this.#chunks.length === 1 ? this.#chunks[0] : Buffer.concat(this.#chunks, this.#length);
    this.#chunks = [buf];
    if (this.#state === 'detect') {
      const n = Math.min(buf.length, V2_SIGNATURE.length);
      if (buf.subarray(0, n).equals(V2_SIGNATURE.subarray(0, n))) {
        if (n < V2_SIGNATURE.length) return undefined;
        this.#state = 'v2';
      } else {
        const m = Math.min(buf.length, V1_PREFIX.length);
        if (!buf.subarray(0, m).equals(V1_PREFIX.subarray(0, m))) throw fail('no PROXY signature');
        if (m < V1_PREFIX.length) return undefined;
        this.#state = 'v1';
      }
    }
    return this.#state === 'v1' ? this.#v1(buf) : this.#v2(buf);
  }

  #v1(buf: Buffer): ParseResult {
    const end = buf.indexOf('\r\n');
    if (end < 0) {
      if (buf.length >= V1_MAX) throw fail('v1 line longer than 107 bytes');
      return undefined;
    }
    if (end + 2 > V1_MAX) throw fail('v1 line longer than 107 bytes');
    const parts = buf.toString('latin1', 0, end).split(' ');
    const rest = buf.subarray(end + 2);
    if (parts[1] === 'UNKNOWN') return { header: { version: 1, command: 'LOCAL', protocol: 'unknown', tlvs: [] }, rest };
    if (parts.length !== 6 || (parts[1] !== 'TCP4' && parts[1] !== 'TCP6')) throw fail(`v1 line "${parts.join(' ')}"`);
    const [, proto, srcIp, dstIp, srcPort, dstPort] = parts;
    return {
      header: {
        version: 1,
        command: 'PROXY',
        protocol: proto.toLowerCase(),
        source: { address: srcIp, port: v1Port(srcPort) },
        destination: { address: dstIp, port: v1Port(dstPort) },
        tlvs: [],
      },
      rest,
    };
  }

  #v2(buf: Buffer): ParseResult {
    if (buf.length < 16) return undefined;
    const verCmd = buf[12];
    if (verCmd >> 4 !== 2) throw fail(`v2 version ${verCmd >> 4}`);
    const cmd = verCmd & 0x0f;
    if (cmd > 1) throw fail(`v2 command ${cmd}`);
    const len = buf.readUInt16BE(14);
    if (len > MAX_V2_LENGTH) throw fail(`v2 length ${len} over ${MAX_V2_LENGTH}`);
    if (buf.length < 16 + len) return undefined;
    const body = buf.subarray(16, 16 + len);
    const rest = buf.subarray(16 + len);
    const family = buf[13] >> 4;
    const transport = buf[13] & 0x0f;
    const t = transport === 1 ? 'tcp' : transport === 2 ? 'udp' : '';
    let protocol = 'unknown';
    let source: SocketAddress | undefined;
    let destination: SocketAddress | undefined;
    let offset = 0;
    if (family === 1) {
      if (len < 12) throw fail('v2 INET block shorter than 12 bytes');
      source = { address: ipv4(body, 0), port: body.readUInt16BE(8) };
      destination = { address: ipv4(body, 4), port: body.readUInt16BE(10) };
      protocol = t ? `${t}4` : 'unknown';
      offset = 12;
    } else if (family === 2) {
      if (len < 36) throw fail('v2 INET6 block shorter than 36 bytes');
      source = { address: ipv6(body, 0), port: body.readUInt16BE(32) };
      destination = { address: ipv6(body, 16), port: body.readUInt16BE(34) };
      protocol = t ? `${t}6` : 'unknown';
      offset = 36;
    } else if (family === 3) {
      if (len < 216) throw fail('v2 UNIX block shorter than 216 bytes');
      protocol = 'unix';
      offset = 216;
    }
    const tlvs: ProxyTlv[] = [];
    while (offset < body.length) {
      if (offset + 3 > body.length) throw fail('v2 TLV header cut short');
      const type = body[offset];
      const length = body.readUInt16BE(offset + 1);
      if (offset + 3 + length > body.length) throw fail(`v2 TLV 0x${type.toString(16)} longer than the header`);
      tlvs.push({ type, value: body.subarray(offset + 3, offset + 3 + length) });
      offset += 3 + length;
    }
    const local = cmd === 0;
    return {
      header: {
        version: 2,
        command: local ? 'LOCAL' : 'PROXY',
        protocol,
        source: local ? undefined : source,
        destination: local ? undefined : destination,
        tlvs,
      },
      rest,
    };
  }
}

function v1Port(s: string): number {
  const n = Number(s);
  if (!/^\d{1,5}$/.test(s) || n > 65535) throw fail(`v1 port ${s}`);
  return n;
}

const ipv4 = (b: Buffer, at: number) => `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;

function ipv6(b: Buffer, at: number): string {
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) groups.push(b.readUInt16BE(at + i * 2).toString(16));
  // Compress the longest run of zero groups (RFC 5952).
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) [best, bestLen] = [i, j - i];
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

/** Well-known v2 TLV types. */
export const PP2_TYPE = { ALPN: 0x01, AUTHORITY: 0x02, CRC32C: 0x03, NOOP: 0x04, UNIQUE_ID: 0x05, SSL: 0x20, NETNS: 0x30 } as const;

/** Builds a v2 header (tests, and clients of an edge that expects one). */
export function encodeProxyV2(h: { source: SocketAddress; destination: SocketAddress; tlvs?: ProxyTlv[] }): Buffer {
  const v6 = h.source.address.includes(':');
  const addr = Buffer.alloc(v6 ? 36 : 12);
  const put = (ip: string, at: number) => {
    if (!v6) ip.split('.').forEach((o, i) => (addr[at + i] = Number(o)));
    else expand6(ip).forEach((g, i) => addr.writeUInt16BE(g, at + i * 2));
  };
  put(h.source.address, 0);
  put(h.destination.address, v6 ? 16 : 4);
  addr.writeUInt16BE(h.source.port, v6 ? 32 : 8);
  addr.writeUInt16BE(h.destination.port, v6 ? 34 : 10);
  const tlvs = (h.tlvs ?? []).map((t) => {
    const head = Buffer.alloc(3);
    head[0] = t.type;
    head.writeUInt16BE(t.value.length, 1);
    return Buffer.concat([head, t.value]);
  });
  const body = Buffer.concat([addr, ...tlvs]);
  const head = Buffer.alloc(16);
  V2_SIGNATURE.copy(head);
  head[12] = 0x21;
  head[13] = v6 ? 0x21 : 0x11;
  head.writeUInt16BE(body.length, 14);
  return Buffer.concat([head, body]);
}

function expand6(ip: string): number[] {
  const [l, r] = ip.split('::');
  const left = l ? l.split(':') : [];
  const right = r !== undefined && r ? r.split(':') : [];
  const zeros = ip.includes('::') ? 8 - left.length - right.length : 0;
  return [...left, ...Array<string>(zeros).fill('0'), ...right].map((g) => parseInt(g, 16));
}

/**
 * Reads a PROXY header from the start of a socket; the bytes after it are unshifted back
 * so the next reader sees the stream as if the header was never there.
 */
export function readProxyHeader(socket: Socket, timeoutMs = 5000): Promise<ProxyHeader> {
  return new Promise((resolve, reject) => {
    const parser = new ProxyProtocolParser();
    const done = (err?: Error, header?: ProxyHeader) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onEnd);
      if (err) reject(err);
      else resolve(header!);
    };
    const onData = (chunk: Buffer) => {
      let r: ParseResult;
      try {
        r = parser.push(chunk);
      } catch (err) {
        done(err as Error);
        return;
      }
      if (!r) return;
      socket.pause();
      if (r.rest.length) socket.unshift(r.rest);
      done(undefined, r.header);
    };
    const onEnd = () => done(fail('the connection ended before the header did'));
    const timer = setTimeout(() => done(fail(`no complete header within ${timeoutMs} ms`)), timeoutMs);
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('error', onEnd);
  });
}
