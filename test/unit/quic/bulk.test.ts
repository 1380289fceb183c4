import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { collect, connectPair, sha256, type Pair } from './support.js';

const SIZE = 50 * 1024 * 1024;

describe('QUIC bulk transfer', () => {
  const pairs: Pair[] = [];
  afterEach(async () => {
    for (const p of pairs.splice(0)) await p.close();
  });

  it('moves 50 MB each way on one stream, sha256 intact', async () => {
    const p = await connectPair();
    pairs.push(p);
    const up = randomBytes(SIZE);
    const down = randomBytes(SIZE);
    const accepted = p.server.acceptStream();
    const stream = await p.client.openStream();
    const peer = await accepted;

    const atServer = collect(peer);
    const atClient = collect(stream);
    const started = performance.now();
    const write = (s: NodeJS.WritableStream, data: Buffer) => {
      for (let off = 0; off < data.length; off += 256 * 1024) s.write(data.subarray(off, off + 256 * 1024));
      s.end();
    };
    write(stream, up);
    write(peer, down);
    const [gotUp, gotDown] = await Promise.all([atServer, atClient]);
    const seconds = (performance.now() - started) / 1000;
    console.log(`100 MB (50 MB each way, same process) in ${seconds.toFixed(2)} s: ${((2 * SIZE) / 1e6 / seconds).toFixed(0)} MB/s`);
    expect(gotUp.length).toBe(SIZE);
    expect(gotDown.length).toBe(SIZE);
    expect(sha256(gotUp)).toBe(sha256(up));
    expect(sha256(gotDown)).toBe(sha256(down));
  }, 120_000);
});
