// Shared bits of the QUIC transport tests: one edge identity per file, a listener + dial
// pair on loopback, and stream helpers.
import { createHash, randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { afterEach, expect } from 'vitest';
import { createEdgeIdentity, type EdgeIdentity } from '../../../src/engine/transport/identity.js';
import { savedEnv, setEnv } from '../../helpers/env.js';
import {
  dialQuic,
  listenQuic,
  type QuicDialOptions,
  type QuicListener,
  type QuicClientConnection,
  type QuicListenOptions,
  type QuicServerConnection,
} from '../../../src/engine/transport/quic/index.js';

let identity: Promise<EdgeIdentity> | undefined;
export function edgeIdentity(): Promise<EdgeIdentity> {
  identity ??= createEdgeIdentity({ hostnames: ['localhost'], ips: ['127.0.0.1', '::1'] });
  return identity;
}

export interface Pair {
  listener: QuicListener;
  /** ngtcp2, or quiche with OXY_QUIC_IMPL=quiche; the edge's with OXY_QUIC_SERVER_IMPL=quiche. */
  client: QuicClientConnection;
  server: QuicServerConnection;
  close(): Promise<void>;
}

/** A listener on 127.0.0.1 and one connection to it, both ends established. */
export async function connectPair(listen: Partial<QuicListenOptions> = {}, dial: Partial<QuicDialOptions> = {}): Promise<Pair> {
  const id = await edgeIdentity();
  let resolveServer!: (c: QuicServerConnection) => void;
  const serverP = new Promise<QuicServerConnection>((r) => (resolveServer = r));
  const listener = await listenQuic({ cert: id.certChain, key: id.key, host: '127.0.0.1', ...listen }, resolveServer);
  const client = await dialQuic({ host: '127.0.0.1', port: listener.address.port, ca: id.caCert, ...dial });
  // Bounded: a server side that never arrives (it timed out mid-handshake) fails here, not at the test's timeout.
  let timer: NodeJS.Timeout | undefined;
  const server = await Promise.race([
    serverP,
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('the server never accepted the dialled connection (10 s)')), 10_000))),
  ]).finally(() => clearTimeout(timer));
  return {
    listener,
    client,
    server,
    close: async () => {
      client.close();
      await listener.close();
    },
  };
}

/** Collects a readable side until 'end'; rejects on 'error'. */
export function collect(stream: Duplex): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
  });
}

/** Echo every stream the connection receives. */
export function echo(conn: QuicClientConnection): void {
  conn.onStream((s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

export interface LossyRelay {
  port: number;
  /** Datagrams dropped so far, per direction. */
  dropped: { up: number; down: number };
  forwarded: { up: number; down: number };
  /** Drop probability (0..1) per direction, changeable at any time. */
  loss: { up: number; down: number };
  /** While true, every client → server datagram is dropped. */
  blackoutUp: boolean;
  /** Sends the client's last datagram to the server again, `times` times (a replay). */
  replayUp(times: number): void;
  close(): void;
}

/**
 * A UDP relay on 127.0.0.1 between one client and `serverPort`, dropping datagrams at
 * random (seeded, so a failure reproduces). Loopback only.
 */
export async function lossyRelay(serverPort: number, loss: { up: number; down: number }, seed = 1): Promise<LossyRelay> {
  const { default: dgram } = await import('node:dgram');
  const front = dgram.createSocket('udp4');
  const back = dgram.createSocket('udp4');
  let state = seed >>> 0 || 1;
  const random = () => {
    // xorshift32: deterministic loss pattern per seed
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state / 0x100000000;
  };
  let client: { address: string; port: number } | undefined;
  let lastUp: Buffer | undefined;
  const relay: LossyRelay = {
    port: 0,
    dropped: { up: 0, down: 0 },
    forwarded: { up: 0, down: 0 },
    loss: { ...loss },
    blackoutUp: false,
    replayUp: (times) => {
      for (let i = 0; lastUp && i < times; i++) back.send(lastUp, serverPort, '127.0.0.1');
    },
    close: () => {
      front.close();
      back.close();
    },
  };
  front.on('message', (msg, rinfo) => {
    client = { address: rinfo.address, port: rinfo.port };
    lastUp = msg;
    if (relay.blackoutUp || random() < relay.loss.up) {
      relay.dropped.up++;
      return;
    }
    relay.forwarded.up++;
    back.send(msg, serverPort, '127.0.0.1');
  });
  back.on('message', (msg) => {
    if (!client) return;
    if (random() < relay.loss.down) {
      relay.dropped.down++;
      return;
    }
    relay.forwarded.down++;
    front.send(msg, client.port, client.address);
  });
  await new Promise<void>((r) => front.bind(0, '127.0.0.1', r));
  await new Promise<void>((r) => back.bind(0, '127.0.0.1', r));
  for (const s of [front, back]) {
    s.setRecvBufferSize(8 * 1024 * 1024);
    s.setSendBufferSize(8 * 1024 * 1024);
  }
  relay.port = front.address().port;
  return relay;
}

/** `mib` MiB each way on one stream, written in 256 KiB pieces; both arrive intact. */
export async function bulkBothWays(client: QuicClientConnection, server: QuicServerConnection, mib: number): Promise<void> {
  const up = randomBytes(mib * 1024 * 1024);
  const down = randomBytes(mib * 1024 * 1024);
  const accepted = server.acceptStream();
  const stream = await client.openStream();
  const peer = await accepted;
  const atServer = collect(peer);
  const atClient = collect(stream);
  for (let off = 0; off < up.length; off += 256 * 1024) stream.write(up.subarray(off, off + 256 * 1024));
  stream.end();
  for (let off = 0; off < down.length; off += 256 * 1024) peer.write(down.subarray(off, off + 256 * 1024));
  peer.end();
  const [gotUp, gotDown] = await Promise.all([atServer, atClient]);
  expect(sha256(gotUp)).toBe(sha256(up));
  expect(sha256(gotDown)).toBe(sha256(down));
}

export interface EnvPairOptions {
  edge?: 'quiche' | 'ngtcp2';
  connector?: 'quiche' | 'ngtcp2';
  host?: string;
  /** Set before the pair is made (undefined: unset). */
  env?: Record<string, string | undefined>;
}

/**
 * Loopback pairs of chosen QUIC libraries made under some `OXY_…` variables (read when a
 * connection is made); after each test the pairs close and the variables are put back.
 */
export function envPairs(keys: readonly string[]): (opts: EnvPairOptions) => Promise<{ client: QuicClientConnection; server: QuicServerConnection }> {
  const saved = savedEnv(['OXY_QUIC_IMPL', ...keys]);
  const open: Array<{ listener: QuicListener; client: QuicClientConnection }> = [];
  afterEach(async () => {
    for (const { listener, client } of open.splice(0)) {
      client.close();
      await listener.close();
    }
    setEnv(saved);
  });
  return async ({ edge = 'ngtcp2', connector = 'ngtcp2', host = '127.0.0.1', env = {} }) => {
    const id = await edgeIdentity();
    setEnv(env);
    let resolveServer!: (c: QuicServerConnection) => void;
    const server = new Promise<QuicServerConnection>((r) => (resolveServer = r));
    const listener = await listenQuic({ cert: id.certChain, key: id.key, host, impl: edge }, resolveServer);
    process.env.OXY_QUIC_IMPL = connector;
    const client = await dialQuic({ host, port: listener.address.port, ca: id.caCert });
    open.push({ listener, client });
    return { client, server: await server };
  };
}
