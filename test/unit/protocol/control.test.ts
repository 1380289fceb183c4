import { Duplex, PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { isOxyError } from '../../../src/core/errors.js';
import { ControlChannel, ControlFrameParser, encodeControlMessage, type ControlMessage } from '../../../src/engine/protocol/control.js';

const messages: ControlMessage[] = [
  { type: 'hello', version: 1, nonce: Buffer.alloc(32, 1).toString('base64'), location: 'test01' },
  {
    type: 'register',
    version: 1,
    tunnelId: 'c1744f8b-faa1-48a4-9e5c-02ac921467fa',
    connectorId: '0b7c6f3e-9f3f-4d0e-8c62-1f0e3c1f4a11',
    connIndex: 2,
    clientVersion: 'oxyctl 0.1.0',
    features: ['datagrams-v1'],
    proof: 'AAAA',
  },
  { type: 'registered', connectionId: 'f3c1b1d2-0000-4000-8000-000000000001', location: 'test01' },
  { type: 'error', code: 'OXY_ERR_TUNNEL_UNAUTHORIZED', message: 'Unauthorized: Invalid tunnel secret', retryable: false },
  { type: 'drain', reason: 'connector shutting down' },
];

/** Two Duplex ends wired to each other. */
function duplexPair(): [Duplex, Duplex] {
  const aToB = new PassThrough();
  const bToA = new PassThrough();
  // A channel that fails destroys its Duplex with the error, which reaches these too.
  for (const s of [aToB, bToA]) s.on('error', () => undefined);
  // Node takes a {readable, writable} pair; @types/node types only the web-streams one.
  const pair = (writable: PassThrough, readable: PassThrough) => Duplex.from({ writable, readable } as unknown as Parameters<typeof Duplex.from>[0]);
  const a = pair(aToB, bToA);
  const b = pair(bToA, aToB);
  for (const s of [a, b]) s.on('error', () => undefined);
  return [a, b];
}

describe('control messages', () => {
  it('round-trip every message, several per chunk and byte by byte', () => {
    const wire = Buffer.concat(messages.map((m) => encodeControlMessage(m)));
    expect(new ControlFrameParser().push(wire)).toEqual(messages);
    const parser = new ControlFrameParser();
    const out: ControlMessage[] = [];
    for (let i = 0; i < wire.length; i++) out.push(...parser.push(wire.subarray(i, i + 1)));
    expect(out).toEqual(messages);
    expect(parser.midFrame).toBe(false);
  });

  it('rejects an oversized length before reading, and garbage with a code', () => {
    const big = Buffer.alloc(4);
    big.writeUInt32BE(1 << 20);
    expect(() => new ControlFrameParser(64 * 1024).push(big)).toThrow(expect.objectContaining({ code: 'OXY_ERR_PROTOCOL_OVERSIZE' }));
    const frame = (body: string): Buffer => {
      const b = Buffer.from(body);
      const len = Buffer.alloc(4);
      len.writeUInt32BE(b.length);
      return Buffer.concat([len, b]);
    };
    for (const body of ['not json', '[1,2]', '{"type":"nope"}', '{"type":"hello","version":1,"nonce":5,"location":"x"}', '{"type":"drain"}']) {
      try {
        new ControlFrameParser().push(frame(body));
        throw new Error(`accepted ${body}`);
      } catch (err) {
        expect(isOxyError(err, 'OXY_ERR_PROTOCOL_MALFORMED'), `${body}: ${(err as Error).message}`).toBe(true);
      }
    }
  });

  it('a channel delivers messages in order, tracks drains, and fails waiters on close', async () => {
    const [a, b] = duplexPair();
    const left = new ControlChannel(a);
    const right = new ControlChannel(b);
    const drains: string[] = [];
    right.on('drain', (reason) => drains.push(reason));
    await left.send(messages[0]!);
    await left.send(messages[2]!);
    expect(await right.expect('hello', 1000)).toEqual(messages[0]);
    expect(await right.next(1000)).toEqual(messages[2]);
    await left.drain('going away');
    await new Promise((r) => setImmediate(r));
    expect(right.peerDraining).toBe(true);
    expect(drains).toEqual(['going away']);
    await left.send(messages[3]!);
    await expect(right.expect('registered', 1000)).rejects.toMatchObject({
      code: 'OXY_ERR_TUNNEL_UNAUTHORIZED',
      message: 'Unauthorized: Invalid tunnel secret',
    });
    await expect(right.next(10)).rejects.toMatchObject({ code: 'OXY_ERR_PROTOCOL_TIMEOUT' });
    const waiting = right.next();
    left.end();
    await expect(waiting).rejects.toMatchObject({ code: 'OXY_ERR_TUNNEL_CLOSED' });
  });

  it('a framing error ends the channel with that code', async () => {
    const [a, b] = duplexPair();
    const right = new ControlChannel(b);
    const waiting = right.next();
    a.write(Buffer.from([0xff, 0xff, 0xff, 0xff]));
    await expect(waiting).rejects.toMatchObject({ code: 'OXY_ERR_PROTOCOL_OVERSIZE' });
    expect(right.isOpen).toBe(false);
  });
});
