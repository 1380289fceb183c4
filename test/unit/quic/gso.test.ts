// UDP GSO: the native socket's `segmentSize` (an additive option of sendBatch) and the
// endpoint's coalescing of back-to-back packets into GSO sends, with its fallback.
import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { NativeError, PktinfoUdpSocket, type OutgoingDatagram } from '../../../src/engine/native/index.js';
import { coalesce, QuicEndpoint } from '../../../src/engine/transport/quic/endpoint.js';

describe('UDP GSO', () => {
  const closers: Array<{ close(): void }> = [];
  afterEach(() => {
    for (const c of closers.splice(0)) c.close();
  });

  it('one sendBatch item with segmentSize arrives as separate datagrams of that size', async () => {
    const receiver = dgram.createSocket('udp4');
    closers.push(receiver);
    await new Promise<void>((r) => receiver.bind(0, '127.0.0.1', r));
    const got: Array<{ length: number; from: string; first: number }> = [];
    const all = new Promise<void>((resolve) =>
      receiver.on('message', (msg, rinfo) => {
        got.push({ length: msg.length, from: rinfo.address, first: msg[0]! });
        if (got.length === 4) resolve();
      }),
    );
    const sender = PktinfoUdpSocket.bind({ address: '0.0.0.0' });
    closers.push(sender);
    const data = Buffer.alloc(3 * 1000 + 123);
    for (let i = 0; i < 4; i++) data.fill(i + 1, i * 1000, Math.min(data.length, (i + 1) * 1000));
    expect(sender.sendBatch([{ data, address: '127.0.0.1', port: receiver.address().port, sourceAddress: '127.0.0.1', segmentSize: 1000 }])).toBe(1);
    await all;
    expect(got).toEqual([
      { length: 1000, from: '127.0.0.1', first: 1 },
      { length: 1000, from: '127.0.0.1', first: 2 },
      { length: 1000, from: '127.0.0.1', first: 3 },
      { length: 123, from: '127.0.0.1', first: 4 },
    ]);
  });

  it('coalesce() joins runs of equal, adjacent packets to one destination, and only those', () => {
    const slab = Buffer.alloc(10_000);
    const at = (off: number, len: number, port = 1, address = '127.0.0.1'): OutgoingDatagram => ({
      data: slab.subarray(off, off + len),
      address,
      port,
    });
    const out = coalesce([
      at(0, 1000),
      at(1000, 1000),
      at(2000, 400), // short: ends the run
      at(2400, 1000),
      at(3400, 1000, 2), // another destination
      at(5000, 1000, 2), // not adjacent
      at(6000, 1000, 2),
    ]);
    expect(out.map((d) => [d.data.byteOffset, d.data.length, d.port, d.segmentSize])).toEqual([
      [0, 2400, 1, 1000],
      [2400, 1000, 1, undefined],
      [3400, 1000, 2, undefined],
      [5000, 2000, 2, 1000],
    ]);
  });

  it('the endpoint falls back to one datagram per packet when the kernel refuses GSO', () => {
    const sent: OutgoingDatagram[][] = [];
    const fake = Object.assign(new EventEmitter(), {
      closed: false,
      address: () => ({ family: 4, address: '127.0.0.1', port: 9 }),
      sendBatch(list: readonly OutgoingDatagram[]) {
        const gso = list.findIndex((d) => d.segmentSize !== undefined);
        if (gso >= 0) {
          sent.push(list.slice(0, gso));
          const err = new NativeError('sendmmsg', 5, 'EIO', 'EIO: no GSO here');
          err.index = gso;
          throw err;
        }
        sent.push([...list]);
        return list.length;
      },
    });
    const endpoint = new QuicEndpoint(fake as unknown as PktinfoUdpSocket, false);
    const slab = Buffer.alloc(4000);
    const packets = [0, 1000, 2000].map((off) => ({ data: slab.subarray(off, off + 1000), address: '127.0.0.1', port: 5 }));
    (endpoint as unknown as { sendNow(d: OutgoingDatagram[]): void }).sendNow(packets);
    expect(sent.flat().map((d) => [d.data.byteOffset, d.data.length, d.segmentSize])).toEqual([
      [0, 1000, undefined],
      [1000, 1000, undefined],
      [2000, 1000, undefined],
    ]);
    // ... and stays off.
    sent.length = 0;
    (endpoint as unknown as { sendNow(d: OutgoingDatagram[]): void }).sendNow(packets);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.every((d) => d.segmentSize === undefined)).toBe(true);
  });
});
