import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { TunnelStream } from '../../../src/engine/transport/types.js';
import { withEnv } from '../../helpers/env.js';
import { bothWaysOnOneStream, echoStreams, errorOf, http2Pair, pumpPattern, readAll, type Pair } from './helpers.js';

let pair: Pair | undefined;
afterEach(async () => {
  await pair?.close();
  pair = undefined;
});

async function echoRoundTrip(stream: TunnelStream, payload: Buffer): Promise<Buffer> {
  const back = readAll(stream);
  stream.end(payload);
  return back;
}

describe('HTTP/2 transport streams', () => {
  it('100 concurrent streams, opened from both sides, echo correctly', async () => {
    pair = await http2Pair();
    echoStreams(pair.edge);
    echoStreams(pair.connector);
    const jobs = Array.from({ length: 100 }, async (_, i) => {
      const from = i % 2 === 0 ? pair!.edge : pair!.connector;
      const payload = randomBytes(1 + ((i * 7919) % (256 * 1024)));
      const stream = await from.openStream();
      const echoed = await echoRoundTrip(stream, payload);
      expect(echoed.equals(payload), `stream ${i} (${payload.length} bytes)`).toBe(true);
    });
    await Promise.all(jobs);
  });

  it('carries 50 MB each way at once on one stream, sha256 intact', async () => {
    pair = await http2Pair();
    await bothWaysOnOneStream(pair.edge, pair.connector, 50 * 1024 * 1024);
  });

  it.each(['native', 'js'])(
    '8 streams carry 16 MB each way at once: no deadlock (%s read-ahead)',
    async (readAhead) => {
      // Node's http2 stops reading while a write is pending; with windows larger than the kernel
      // buffers, two sessions sending at once would both stop for good unless one side always
      // drains its socket (the connector's read-ahead: the addon's relay, or ReadAheadDuplex).
      pair = await withEnv({ OXY_H2_READAHEAD: readAhead }, () => http2Pair());
      await Promise.all(Array.from({ length: 8 }, () => bothWaysOnOneStream(pair!.edge, pair!.connector, 16 * 1024 * 1024)));
    },
    60_000,
  );

  it('carries 50 MB each way on a connector-opened stream', async () => {
    pair = await http2Pair();
    await bothWaysOnOneStream(pair.connector, pair.edge, 50 * 1024 * 1024);
  });

  it('half-closes: each side keeps writing after the other ended', async () => {
    pair = await http2Pair();
    // edge ends first, connector answers after seeing the end
    pair.connector.onStream((stream) => {
      void readAll(stream).then((request) => {
        stream.write('got ');
        setTimeout(() => stream.end(request.toString().toUpperCase()), 20);
      });
    });
    const stream = await pair.edge.openStream();
    const answer = readAll(stream);
    stream.end('request');
    expect((await answer).toString()).toBe('got REQUEST');

    // connector ends first on a connector-opened stream, edge answers after the end
    pair.edge.onStream((s) => {
      void readAll(s).then((body) => s.end(`${body.length} bytes`));
    });
    const up = await pair.connector.openStream();
    const reply = readAll(up);
    up.end(Buffer.alloc(100_000));
    expect((await reply).toString()).toBe('100000 bytes');
  });

  it('a stream destroyed mid-transfer errors on the other side (both directions)', async () => {
    pair = await http2Pair();
    // connector destroys while the edge is still sending
    pair.connector.onStream((stream) => stream.once('data', () => stream.destroy()));
    const a = await pair.edge.openStream();
    const aError = errorOf(a);
    void pumpPattern(a, 64 * 1024 * 1024).catch(() => undefined);
    expect(await aError).toMatchObject({ code: 'OXY_ERR_STREAM_RESET' });

    // edge destroys while the connector is sending
    const accepted = pair.edge.acceptStream({ timeoutMs: 5000 });
    const b = await pair.connector.openStream();
    const bError = errorOf(b);
    const edgeSide = await accepted;
    edgeSide.on('error', () => undefined); // its own error: destroy(err) emits it locally
    edgeSide.once('data', () => edgeSide.destroy(new Error('edge gave up')));
    void pumpPattern(b, 64 * 1024 * 1024).catch(() => undefined);
    expect(await bError).toMatchObject({ code: 'OXY_ERR_STREAM_RESET' });
  });

  it('a reset after the reader ended its own side is an error, not a clean end', async () => {
    pair = await http2Pair();
    pair.connector.onStream((stream) => {
      stream.resume();
      stream.once('end', () => {
        stream.write(Buffer.alloc(100_000));
        setTimeout(() => stream.destroy(), 20);
      });
    });
    const stream = await pair.edge.openStream();
    const got = readAll(stream);
    stream.end('request');
    await expect(got).rejects.toMatchObject({ code: 'OXY_ERR_STREAM_RESET' });
  });

  it('queues opens beyond the peer stream limit and runs them all', async () => {
    pair = await http2Pair({ connector: { settings: { maxConcurrentStreams: 6 } } });
    echoStreams(pair.connector);
    const opened = await Promise.all(Array.from({ length: 4 }, () => pair!.edge.openStream()));
    // 2 internal streams + 4 open: further opens wait
    const waiting = Array.from({ length: 10 }, () => pair!.edge.openStream());
    await new Promise((r) => setTimeout(r, 50));
    expect(pair.edge.stats().queuedOpens).toBe(10);
    const firstRound = opened.map((s, i) => echoRoundTrip(s, Buffer.from(`first ${i}`)));
    await Promise.all(firstRound);
    const rest = await Promise.all(waiting.map(async (p, i) => (await echoRoundTrip(await p, Buffer.from(`queued ${i}`))).toString()));
    expect(rest).toEqual(Array.from({ length: 10 }, (_, i) => `queued ${i}`));
    expect(pair.edge.stats().queuedOpens).toBe(0);
  });

  it('an aborted open leaves the queue', async () => {
    pair = await http2Pair({ connector: { settings: { maxConcurrentStreams: 3 } } });
    const held = await pair.edge.openStream();
    const controller = new AbortController();
    const open = pair.edge.openStream({ signal: controller.signal });
    controller.abort();
    await expect(open).rejects.toMatchObject({ code: 'OXY_ERR_ABORTED' });
    held.destroy();
  });
});
