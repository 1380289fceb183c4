// A pump's read of its fd (the connector's host socket in iperf3 -R, the edge's upgraded socket
// device → host) takes up to 256 KiB at once (Conn::PumpRead, kPumpReadBytes): a bulk flow needs a
// quarter of the reads — and of the window updates toward its host — it needed at 64 KiB.
// OXY_PUMP_READ=0: 64 KiB, as before. Both ends pump their stream to a TCP socket, 8 MiB each way:
//
//   client netns  cli0 198.18.24.100/24 ── veth ── srv0 198.18.24.1/24  server netns
//
// Bytes intact both ways in both arms; the largest read says which arm ran (counts, not time).
import { randomBytes } from 'node:crypto';
import { createServer, connect, type Socket } from 'node:net';
import { expect, it } from 'vitest';
import { pumpFlow } from '../../../src/engine/transport/flow-pump.js';
import type { Ngtcp2TunnelConnection } from '../../../src/engine/transport/quic/index.js';
import type { TunnelStream } from '../../../src/engine/transport/types.js';
import { withEnv } from '../../helpers/env.js';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { collect, sha256 } from '../../unit/quic/support.js';
import { ngtcp2Connect, ngtcp2VethSuite } from './ngtcp2-netns.js';

const SERVER = '198.18.24.1';
const SIZE = 8 * 1024 * 1024;

/** A connected pair of TCP sockets on loopback: [the end a stream pumps, the end the test reads and writes]. */
async function tcpPair(): Promise<[Socket, Socket]> {
  const server = createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const accepted = new Promise<Socket>((r) => server.once('connection', r));
  const port = (server.address() as { port: number }).port;
  const outer = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  const inner = await accepted;
  server.close();
  inner.pause();
  return [inner, outer];
}

privilegedDescribe("a pump's reads of its fd: up to 256 KiB at once (OXY_PUMP_READ=0: 64 KiB)", () => {
  const pair = ngtcp2VethSuite('oxy-prd', SERVER, '198.18.24.100');

  /** `SIZE` bytes each way between two sockets whose streams the addon pumps at both ends: both ends' counters. */
  async function pumpedBulk() {
    const { conn, edge } = await ngtcp2Connect(pair);
    const acceptedStream = edge.acceptStream();
    const stream = (await conn.openStream()) as TunnelStream;
    // A first byte each way opens the stream at the peer and takes its preamble through JS.
    stream.write(Buffer.from('u'));
    const peer = (await acceptedStream) as TunnelStream;
    peer.write(Buffer.from('d'));
    const first = (s: TunnelStream) => new Promise<void>((r) => s.once('data', () => (s.pause(), r())));
    await Promise.all([first(stream), first(peer)]);
    const [clientInner, clientOuter] = await tcpPair();
    const [edgeInner, edgeOuter] = await tcpPair();
    const clientPump = pumpFlow(stream, clientInner);
    const edgePump = pumpFlow(peer, edgeInner);
    expect(clientPump).toBeDefined();
    expect(edgePump).toBeDefined();
    const up = randomBytes(SIZE);
    const down = randomBytes(SIZE);
    const atEdge = collect(edgeOuter);
    const atClient = collect(clientOuter);
    clientOuter.end(up);
    edgeOuter.end(down);
    const [gotUp, gotDown] = await Promise.all([atEdge, atClient]);
    expect(sha256(gotUp)).toBe(sha256(up));
    expect(sha256(gotDown)).toBe(sha256(down));
    await Promise.all([clientPump!.done, edgePump!.done]);
    return { client: (conn as Ngtcp2TunnelConnection).quicStats().counters!, edge: (edge as Ngtcp2TunnelConnection).quicStats().counters! };
  }

  it('by default each end reads its socket more than 64 KiB at a time, at most 256 KiB; bytes intact both ways', async () => {
    const { client: c, edge } = await withEnv({ OXY_PUMP_READ: undefined }, () => pumpedBulk());
    for (const end of [c, edge]) {
      expect(end.pumpReadBytes).toBe(SIZE);
      expect(end.pumpReadMax).toBeGreaterThan(64 * 1024);
      expect(end.pumpReadMax).toBeLessThanOrEqual(256 * 1024);
    }
  }, 60_000);

  it('OXY_PUMP_READ=0: 64 KiB at most, as before; bytes intact both ways', async () => {
    const { client: c, edge } = await withEnv({ OXY_PUMP_READ: '0' }, () => pumpedBulk());
    for (const end of [c, edge]) {
      expect(end.pumpReadBytes).toBe(SIZE);
      expect(end.pumpReadMax).toBeLessThanOrEqual(64 * 1024);
      // 8 MiB in 64 KiB reads: 128 at least.
      expect(end.pumpReads).toBeGreaterThanOrEqual(SIZE / (64 * 1024));
    }
  }, 60_000);

  it('OXY_PUMP_READ=BYTES: that many at most (for pairs); bytes intact both ways', async () => {
    const { client: c, edge } = await withEnv({ OXY_PUMP_READ: String(512 * 1024) }, () => pumpedBulk());
    for (const end of [c, edge]) {
      expect(end.pumpReadBytes).toBe(SIZE);
      expect(end.pumpReadMax).toBeLessThanOrEqual(512 * 1024);
    }
  }, 60_000);
});
