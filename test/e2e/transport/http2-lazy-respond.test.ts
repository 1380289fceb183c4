import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import type { TunnelStream } from '../../../src/engine/transport/types.js';
import { http2Pair, type Pair } from './helpers.js';

/**
 * The connector answers a data stream's HTTP/2 request with its first write (the 200 shares that
 * TLS write): a stream it ends without writing must still end cleanly at the edge, not hang.
 */
describe('http2 data streams answered lazily', () => {
  let pair: Pair | undefined;
  afterEach(async () => {
    await pair?.close();
    pair = undefined;
  });

  const accepted = (p: Pair): Promise<TunnelStream> => p.connector.acceptStream();

  it('a stream the connector ends with nothing written ends at the edge', async () => {
    pair = await http2Pair();
    const edgeStream = await pair.edge.openStream();
    edgeStream.on('error', () => undefined);
    edgeStream.write('hello');
    const connectorStream = await accepted(pair);
    connectorStream.on('error', () => undefined);
    connectorStream.resume();
    connectorStream.end();
    edgeStream.resume();
    // Bounded: the edge's stream ends within 5 s or the test fails.
    const ended = once(edgeStream, 'end');
    const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error('no end within 5 s')), 5000).unref());
    await Promise.race([ended, timeout]);
    edgeStream.end();
  });

  it('a first write carries the bytes, and both ends close cleanly', async () => {
    pair = await http2Pair();
    const edgeStream = await pair.edge.openStream();
    edgeStream.on('error', () => undefined);
    edgeStream.end('ping');
    const connectorStream = await accepted(pair);
    connectorStream.on('error', () => undefined);
    const chunks: Buffer[] = [];
    connectorStream.on('data', (c: Buffer) => chunks.push(c));
    await once(connectorStream, 'end');
    expect(Buffer.concat(chunks).toString()).toBe('ping');
    connectorStream.end('pong');
    const back: Buffer[] = [];
    edgeStream.on('data', (c: Buffer) => back.push(c));
    await once(edgeStream, 'end');
    expect(Buffer.concat(back).toString()).toBe('pong');
  });
});
