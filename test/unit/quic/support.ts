// Shared bits of the QUIC transport tests: one edge identity per file, a listener + dial
// pair on loopback, and stream helpers.
import { createHash } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { createEdgeIdentity, type EdgeIdentity } from '../../../src/engine/edge/identity.js';
import {
  dialQuic,
  listenQuic,
  type QuicDialOptions,
  type QuicListener,
  type QuicListenOptions,
  type QuicTunnelConnection,
} from '../../../src/engine/transport/quic/index.js';

let identity: Promise<EdgeIdentity> | undefined;
export function edgeIdentity(): Promise<EdgeIdentity> {
  identity ??= createEdgeIdentity({ hostnames: ['localhost'], ips: ['127.0.0.1', '::1'] });
  return identity;
}

export interface Pair {
  listener: QuicListener;
  client: QuicTunnelConnection;
  server: QuicTunnelConnection;
  close(): Promise<void>;
}

/** A listener on 127.0.0.1 and one connection to it, both ends established. */
export async function connectPair(
  listen: Partial<QuicListenOptions> = {},
  dial: Partial<QuicDialOptions> = {},
): Promise<Pair> {
  const id = await edgeIdentity();
  let resolveServer!: (c: QuicTunnelConnection) => void;
  const serverP = new Promise<QuicTunnelConnection>((r) => (resolveServer = r));
  const listener = await listenQuic({ cert: id.certChain, key: id.key, host: '127.0.0.1', ...listen }, resolveServer);
  const client = await dialQuic({ host: '127.0.0.1', port: listener.address.port, ca: id.caCert, ...dial });
  const server = await serverP;
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
export function echo(conn: QuicTunnelConnection): void {
  conn.onStream((s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}
