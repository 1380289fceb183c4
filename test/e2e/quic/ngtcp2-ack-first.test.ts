// OXY_QUIC_ACK_FIRST=1 (opt-in, for A/B pairs): a bulk receiver acknowledges before it writes
// what it read to its sockets — a flush that follows a read of ≥ 32 KiB of stream bytes sends its
// packets (the ACK among them) first, then the pumps' writes, then whatever those freed (credit).
// Both ends pump their stream to a TCP socket (as the connector its host's and the edge its
// device's upgraded one), 8 MiB each way:
//
//   client netns  cli0 198.18.14.100/24 ── veth ── srv0 198.18.14.1/24  server netns
//
// By default one pass: the writes before the packets. Bytes intact both ways.
//
// OXY_QUIC_ACK_SPLIT=1 (opt-in, for A/B pairs): a read (one recvmmsg) of several messages is
// acknowledged after the first message that brought ≥ 32 KiB of stream bytes, before the rest are
// decrypted (Conn::AckEarly), so the sender seals its next burst meanwhile; =server (=client): only
// at that end.
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

const SERVER = '198.18.14.1';
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

privilegedDescribe("ngtcp2: a bulk receiver's ACK before its sockets' writes (OXY_QUIC_ACK_FIRST=1)", () => {
  const pair = ngtcp2VethSuite('oxy-ackf', SERVER, '198.18.14.100');

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

  it('OXY_QUIC_ACK_FIRST=1: each end sends its ACK before writing a bulk read to its socket; bytes intact both ways', async () => {
    const { client: c, edge } = await withEnv({ OXY_QUIC_ACK_FIRST: '1' }, () => pumpedBulk());
    expect(c.acksFirst).toBeGreaterThan(0);
    expect(edge.acksFirst).toBeGreaterThan(0);
  }, 60_000);

  it('OXY_QUIC_ACK_SPLIT=1: each end acknowledges in the middle of a bulk read, before decrypting the rest; bytes intact both ways', async () => {
    const { client: c, edge } = await withEnv({ OXY_QUIC_ACK_SPLIT: '1', OXY_QUIC_ACK_FIRST: undefined }, () => pumpedBulk());
    expect(c.acksSplit).toBeGreaterThan(0);
    expect(edge.acksSplit).toBeGreaterThan(0);
    expect(c.acksFirst).toBe(0);
  }, 60_000);

  it('OXY_QUIC_ACK_SPLIT=server: only the server end (the edge) splits its reads; bytes intact both ways', async () => {
    const { client: c, edge } = await withEnv({ OXY_QUIC_ACK_SPLIT: 'server', OXY_QUIC_ACK_FIRST: undefined }, () => pumpedBulk());
    expect(c.acksSplit).toBe(0);
    expect(edge.acksSplit).toBeGreaterThan(0);
  }, 60_000);

  it('by default the writes go before the packets, in one pass, and a read is acknowledged after all of it; bytes intact both ways', async () => {
    const { client: c, edge } = await withEnv({ OXY_QUIC_ACK_FIRST: undefined, OXY_QUIC_ACK_SPLIT: undefined }, () => pumpedBulk());
    expect(c.acksFirst).toBe(0);
    expect(edge.acksFirst).toBe(0);
    expect(c.acksSplit).toBe(0);
    expect(edge.acksSplit).toBe(0);
  }, 60_000);
});
