import { createHash, randomBytes } from 'node:crypto';
import type { Duplex, Readable, Writable } from 'node:stream';
import { expect } from 'vitest';
import { createEdgeIdentity, type EdgeIdentity } from '../../../src/engine/transport/identity.js';
import { dialHttp2Tunnel, Http2TunnelListener, type AcceptHttp2Options, type DialHttp2Options } from '../../../src/engine/transport/http2/index.js';
import type { TunnelConnection } from '../../../src/engine/transport/types.js';

let identity: Promise<EdgeIdentity> | undefined;
/** One identity per test file (key generation is the slow part). */
export function testIdentity(): Promise<EdgeIdentity> {
  identity ??= createEdgeIdentity({ hostnames: ['edge.oxy.test'], ips: ['127.0.0.1'] });
  return identity;
}

export interface Pair {
  edge: TunnelConnection;
  connector: TunnelConnection;
  listener: Http2TunnelListener;
  close(): Promise<void>;
}

/** An edge listener on 127.0.0.1:0 and one connector connection to it. */
export async function http2Pair(options: { connector?: Partial<DialHttp2Options>; edge?: AcceptHttp2Options } = {}): Promise<Pair> {
  const id = await testIdentity();
  const listener = new Http2TunnelListener({ key: id.key, cert: id.certChain, ...options.edge });
  const { port } = await listener.listen(0, '127.0.0.1');
  const edgeSide = new Promise<TunnelConnection>((resolve) => listener.once('connection', resolve));
  const connector = await dialHttp2Tunnel({ host: '127.0.0.1', port, ca: id.caCert, caPin: id.caPin, ...options.connector });
  const edge = await edgeSide;
  return {
    edge,
    connector,
    listener,
    async close() {
      connector.close();
      edge.close();
      await Promise.all([edge.closed, connector.closed]);
      await listener.close();
    },
  };
}

/** Write `total` bytes of a deterministic pattern with backpressure; resolves with its sha256. */
export function pumpPattern(stream: Writable, total: number, opts: { end?: boolean } = {}): Promise<string> {
  const hash = createHash('sha256');
  const block = randomBytes(64 * 1024);
  return new Promise((resolve, reject) => {
    let sent = 0;
    const onError = (err: Error): void => reject(err);
    stream.once('error', onError);
    const go = (): void => {
      while (sent < total) {
        const n = Math.min(block.length, total - sent);
        const chunk = Buffer.from(block.subarray(0, n));
        if (n >= 4) chunk.writeUInt32BE(sent >>> 0, 0); // vary the content from chunk to chunk
        hash.update(chunk);
        sent += n;
        if (!stream.write(chunk)) {
          stream.once('drain', go);
          return;
        }
      }
      stream.off('error', onError);
      if (opts.end !== false) stream.end();
      resolve(hash.digest('hex'));
    };
    go();
  });
}

/** Read to the end; resolves with byte count and sha256. */
export function drainHash(stream: Readable): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash('sha256');
  let bytes = 0;
  return new Promise((resolve, reject) => {
    stream.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      hash.update(chunk);
    });
    stream.once('end', () => resolve({ bytes, sha256: hash.digest('hex') }));
    stream.once('error', reject);
  });
}

/**
 * Opens a stream from `opener` (accepted on `acceptor`), sends `total` bytes each way at once and
 * checks that both sides received every byte in order.
 */
export async function bothWaysOnOneStream(opener: TunnelConnection, acceptor: TunnelConnection, total: number): Promise<void> {
  const accepted = acceptor.acceptStream({ timeoutMs: 5000 });
  const opened = await opener.openStream();
  const other = await accepted;
  const [sentOut, sentBack, gotOut, gotBack] = await Promise.all([pumpPattern(opened, total), pumpPattern(other, total), drainHash(other), drainHash(opened)]);
  expect(gotOut).toEqual({ bytes: total, sha256: sentOut });
  expect(gotBack).toEqual({ bytes: total, sha256: sentBack });
}

export function readAll(stream: Readable): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
  });
}

/** Echo every accepted stream back to its sender, half-closing after the input ends. */
export function echoStreams(conn: TunnelConnection): void {
  conn.onStream((stream: Duplex) => {
    stream.on('error', () => undefined);
    stream.pipe(stream);
  });
}

export function errorOf(stream: Duplex): Promise<Error> {
  return new Promise((resolve) => stream.once('error', resolve));
}
