// Two ngtcp2 ends in two namespaces, one bulk exchange between them: shared by the files that
// test what the addon's QUIC does on a real path (GSO/GRO, path MTU discovery, windows, ACKs).
import { randomBytes } from 'node:crypto';
import { connect, createServer, type Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { PktinfoUdpSocket, withNetns } from '../../../src/engine/native/index.js';
import { createEdgeIdentity, type EdgeIdentity } from '../../../src/engine/transport/identity.js';
import { pumpFlow } from '../../../src/engine/transport/flow-pump.js';
import {
  dialQuic,
  listenQuic,
  type Ngtcp2TunnelConnection,
  type QuicClientConnection,
  type QuicListener,
  type QuicServerConnection,
} from '../../../src/engine/transport/quic/index.js';
import type { TunnelStream } from '../../../src/engine/transport/types.js';
import { savedEnv, setEnv } from '../../helpers/env.js';
import { TestNetns } from '../../helpers/netns.js';
import { collect, sha256 } from '../../unit/quic/support.js';

/** What a test opened, closed after each test by the suite's hooks. */
export type Opened = Array<{ listener: QuicListener; conn: QuicClientConnection }>;

/**
 * A describe's hooks: `setup` makes the namespaces (through `create`, so that the ones made before
 * a failure are deleted too) before all tests; what a test opened is closed after it;
 * OXY_QUIC_IMPL (set by `ngtcp2Bulk`) is restored and the namespaces deleted after all.
 */
export function ngtcp2NetnsSuite(setup: (create: (name: string) => TestNetns) => void | Promise<void>): Opened {
  const savedImpl = savedEnv(['OXY_QUIC_IMPL']);
  const open: Opened = [];
  const made: TestNetns[] = [];
  beforeAll(() =>
    setup((name) => {
      const ns = TestNetns.create(name);
      made.push(ns);
      return ns;
    }),
  );
  afterEach(async () => {
    for (const { listener, conn } of open.splice(0)) {
      conn.close();
      await listener.close();
    }
  });
  afterAll(() => {
    setEnv(savedImpl);
    for (const ns of made.splice(0)) ns.delete();
  });
  return open;
}

/** Two namespaces of a describe, the server's address, its identity and what its tests opened. */
export interface Ngtcp2Pair {
  server: TestNetns;
  client: TestNetns;
  /** The server's address in its namespace. */
  address: string;
  id: EdgeIdentity;
  open: Opened;
}

/**
 * ngtcp2NetnsSuite for the plain case: `${prefix}-srv` and `${prefix}-cli` joined by one veth,
 *   client netns  cli0 `clientAddress`/24 ── veth ── srv0 `address`/24  server netns
 * and an identity for `address`. The pair's namespaces and identity are there from beforeAll on.
 */
export function ngtcp2VethSuite(prefix: string, address: string, clientAddress: string): Ngtcp2Pair {
  const pair = { address } as Ngtcp2Pair;
  pair.open = ngtcp2NetnsSuite(async (create) => {
    pair.id = await createEdgeIdentity({ ips: [address] });
    pair.server = create(`${prefix}-srv`);
    pair.client = create(`${prefix}-cli`);
    pair.server.veth('srv0', pair.client, 'cli0');
    pair.server.ipBatch([`addr add ${address}/24 dev srv0`]);
    pair.client.ipBatch([`addr add ${clientAddress}/24 dev cli0`]);
  });
  return pair;
}

export interface ConnectOptions extends Ngtcp2Pair {
  gso?: boolean;
  gro?: boolean;
  pmtud?: boolean;
}

export interface BulkOptions extends ConnectOptions {
  size: number;
}

/**
 * Both ends on ngtcp2 (sockets made inside their namespaces): the listener, the client's
 * connection and the server's, closed after the test. Sets OXY_QUIC_IMPL=ngtcp2 for the dial: the
 * caller restores it (ngtcp2NetnsSuite does).
 */
export async function ngtcp2Connect(o: ConnectOptions): Promise<{ listener: QuicListener; conn: QuicClientConnection; edge: QuicServerConnection }> {
  const { gso, gro, pmtud } = o;
  let accepted!: (c: QuicServerConnection) => void;
  const serverConn = new Promise<QuicServerConnection>((r) => (accepted = r));
  const socket = withNetns(o.server.path, () => PktinfoUdpSocket.bind({ address: o.address, recvBufferSize: 8 << 20, sendBufferSize: 8 << 20 }));
  const listener = await listenQuic({ cert: o.id.certChain, key: o.id.key, socket, impl: 'ngtcp2', gso, gro, pmtud }, accepted);
  process.env.OXY_QUIC_IMPL = 'ngtcp2';
  // The addon's client makes its socket before dialQuic's first await (an IP: no lookup), so
  // in the client's namespace; the promise is carried out of withNetns in an object.
  const { dialing } = withNetns(o.client.path, () => ({
    dialing: dialQuic({ host: o.address, port: listener.address.port, ca: o.id.caCert, gso, gro, pmtud }),
  }));
  const conn = await dialing;
  o.open.push({
    listener: { close: async () => (await listener.close(), socket.close()) } as QuicListener,
    conn,
  });
  return { listener, conn, edge: await serverConn };
}

/** ngtcp2Connect, then `size` bytes each way on one stream, checked byte for byte. */
export async function ngtcp2Bulk(o: BulkOptions): Promise<{ listener: QuicListener; conn: QuicClientConnection; edge: QuicServerConnection }> {
  const { listener, conn, edge } = await ngtcp2Connect(o);
  const up = randomBytes(o.size);
  const down = randomBytes(o.size);
  const acceptedStream = edge.acceptStream();
  const stream = await conn.openStream();
  const peer = await acceptedStream;
  const atEdge = collect(peer);
  const atClient = collect(stream);
  for (let off = 0; off < o.size; off += 256 * 1024) {
    stream.write(up.subarray(off, off + 256 * 1024));
    peer.write(down.subarray(off, off + 256 * 1024));
  }
  stream.end();
  peer.end();
  const [gotUp, gotDown] = await Promise.all([atEdge, atClient]);
  expect(sha256(gotUp)).toBe(sha256(up));
  expect(sha256(gotDown)).toBe(sha256(down));
  return { listener, conn, edge };
}

/** A connected pair of TCP sockets on loopback: [the end a stream pumps, the end the test reads and writes]. */
export async function tcpPair(): Promise<[Socket, Socket]> {
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

/**
 * `size` random bytes each way between two loopback sockets whose streams the addon pumps at both
 * ends of a fresh connection (checked by sha256): both ends' QUIC counters.
 */
export async function pumpedBulk(pair: Ngtcp2Pair, size: number) {
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
  const up = randomBytes(size);
  const down = randomBytes(size);
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
