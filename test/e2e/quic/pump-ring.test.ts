// A flush that writes several pumps' sockets writes them in one io_uring_enter (cpp/quic-pump.cc
// Conn::RingWrites; OXY_PUMP_RING=0: one writev each, as before). The connector's case: requests
// for 16 keep-alive connections read from one packet, each pumped to its own TCP socket:
//
//   client netns  cli0 198.18.15.100/24 ── veth ── srv0 198.18.15.1/24  server netns
//
// The client's streams are pumped to loopback sockets (as the connector's to its host); the server
// writes one message on each stream in one turn. Counted: the flushes whose writes went in one
// enter and the writes in them; checked: each socket gets its own bytes, in order, also when the
// sockets are full (a write the ring finds full completes at once with EAGAIN: the rest waits for
// the socket's room as before).
import { randomBytes } from 'node:crypto';
import { type Socket } from 'node:net';
import { expect, it } from 'vitest';
import { pumpFlow } from '../../../src/engine/transport/flow-pump.js';
import type { Ngtcp2TunnelConnection } from '../../../src/engine/transport/quic/index.js';
import type { TunnelStream } from '../../../src/engine/transport/types.js';
import { withEnv } from '../../helpers/env.js';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { sha256 } from '../../unit/quic/support.js';
import { ngtcp2Connect, ngtcp2VethSuite, tcpPair } from './ngtcp2-netns.js';

const STREAMS = 16;
const ROUNDS = 20;
const BULK = 8 << 20;

/** Resolves once `socket` has read `n` bytes (more is a failure), with what it read. */
function readBytes(socket: Socket, n: number): Promise<Buffer> {
  if (n === 0) return Promise.resolve(Buffer.alloc(0));
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let got = 0;
    const onData = (b: Buffer) => {
      parts.push(b);
      got += b.length;
      if (got < n) return;
      socket.off('data', onData);
      if (got > n) reject(new Error(`${got} bytes, ${n} expected`));
      else resolve(Buffer.concat(parts));
    };
    socket.on('data', onData);
  });
}

privilegedDescribe("the pumps' writes of a flush in one io_uring_enter (OXY_PUMP_RING)", () => {
  const pair = ngtcp2VethSuite('oxy-pring', '198.18.15.1', '198.18.15.100');

  /** 16 streams pumped at the client end to their sockets: the server's rounds of one message per stream, then a bulk round into full sockets. */
  async function rounds() {
    const { conn, edge } = await ngtcp2Connect(pair);
    const peers: TunnelStream[] = [];
    const outers: Socket[] = [];
    const pumps: Array<NonNullable<ReturnType<typeof pumpFlow>>> = [];
    for (let i = 0; i < STREAMS; i++) {
      const acceptedStream = edge.acceptStream();
      const stream = (await conn.openStream()) as TunnelStream;
      // A first byte each way opens the stream at the peer and takes its preamble through JS.
      stream.write(Buffer.from('u'));
      const peer = (await acceptedStream) as TunnelStream;
      peer.write(Buffer.from('d'));
      await new Promise<void>((r) => stream.once('data', () => (stream.pause(), r())));
      await new Promise<void>((r) => peer.once('data', () => r()));
      const [inner, outer] = await tcpPair();
      const pump = pumpFlow(stream, inner);
      expect(pump).toBeDefined();
      pumps.push(pump!);
      peers.push(peer);
      outers.push(outer);
    }
    // Keep-alive requests: one small message on every stream in one turn, 20 times.
    for (let round = 0; round < ROUNDS; round++) {
      const messages = peers.map((_, i) => Buffer.from(`GET /${round}/${i} HTTP/1.1\r\nHost: h\r\n\r\n`));
      const got = outers.map((o, i) => readBytes(o, messages[i]!.length));
      peers.forEach((p, i) => p.write(messages[i]));
      expect((await Promise.all(got)).map(String)).toEqual(messages.map(String));
    }
    // Full sockets: 8 MiB on two streams while nobody reads their sockets (a loopback socket
    // holds ~4 MiB), then read; the other streams end with nothing more.
    for (const o of outers) o.pause();
    const bulk = peers.map((_, i) => (i < 2 ? randomBytes(BULK) : Buffer.alloc(0)));
    const atOuters = outers.map((o, i) => readBytes(o, bulk[i]!.length));
    peers.forEach((p, i) => (bulk[i]!.length > 0 ? p.end(bulk[i]) : p.end()));
    await new Promise((r) => setTimeout(r, 1000));
    for (const o of outers) o.resume();
    const gotBulk = await Promise.all(atOuters);
    gotBulk.forEach((b, i) => expect(sha256(b)).toBe(sha256(bulk[i]!)));
    const counters = (conn as Ngtcp2TunnelConnection).quicStats().counters!;
    // The other way closed too: each socket's FIN ends its stream at the server.
    const ended = peers.map((p) => new Promise((r) => p.once('end', r)));
    for (const p of peers) p.resume();
    for (const o of outers) o.end();
    await Promise.all(ended);
    await Promise.all(pumps.map((p) => p.done));
    return counters;
  }

  it('by default the messages read together are written to their sockets in one enter: each socket its own bytes, full sockets too', async () => {
    const c = await withEnv({ OXY_PUMP_RING: undefined }, () => rounds());
    // 320 writes; most rounds' 16 arrive in one or two packets.
    expect(c.ringWrites).toBeGreaterThanOrEqual(ROUNDS * 4);
    expect(c.ringEnters).toBeGreaterThan(0);
    expect(c.ringWrites / c.ringEnters).toBeGreaterThanOrEqual(2);
    // The bulk round found sockets full in the ring: their rest went later, in order.
    expect(c.ringShort).toBeGreaterThan(0);
  }, 60_000);

  it('OXY_PUMP_RING=0: one writev per socket, no enter; the same bytes', async () => {
    const c = await withEnv({ OXY_PUMP_RING: '0' }, () => rounds());
    expect(c.ringEnters).toBe(0);
    expect(c.ringWrites).toBe(0);
    expect(c.ringShort).toBe(0);
  }, 60_000);
});
