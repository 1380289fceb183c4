import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';

import { relay } from '../../../src/engine/util/pump.js';

/** A connected pair of loopback TCP sockets. */
async function pair(): Promise<[net.Socket, net.Socket]> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'connection');
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  const [peer] = (await accepted) as [net.Socket];
  await once(client, 'connect');
  server.close();
  return [client, peer];
}

const sockets: net.Socket[] = [];
afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
});

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('relay', () => {
  it('queues up to its bound while the destination does not drain, pauses the source, then delivers every byte and the end', async () => {
    // writer → [src … relay … dst] → reader (paused at first)
    const [writer, src] = await pair();
    const [dst, reader] = await pair();
    sockets.push(writer, src, dst, reader);
    // Small kernel buffers on the far side, so what the reader does not take stays in dst's queue.
    reader.pause();
    const unsent = 256 * 1024;
    const done = relay(src, dst, unsent);
    const data = randomBytes(8 * 1024 * 1024);
    writer.end(data);

    // Bounded wait for the relay to stop: the source pauses once dst holds more than `unsent`.
    const deadline = Date.now() + 5000;
    while (!src.isPaused() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(src.isPaused()).toBe(true);
    // One chunk (≤ 64 KiB read) past the bound at most.
    expect(dst.writableLength).toBeGreaterThan(unsent);
    expect(dst.writableLength).toBeLessThanOrEqual(unsent + 64 * 1024);
    // Still paused a while later: nothing more is queued while the reader stays idle.
    const held = dst.writableLength;
    await new Promise((r) => setTimeout(r, 100));
    expect(dst.writableLength).toBe(held);

    const chunks: Buffer[] = [];
    reader.on('data', (c: Buffer) => chunks.push(c));
    reader.resume();
    await Promise.all([once(reader, 'end'), done]);
    const got = Buffer.concat(chunks);
    expect(got.length).toBe(data.length);
    expect(sha(got)).toBe(sha(data));
  });

  it('destroys both sides when the source fails', async () => {
    const [writer, src] = await pair();
    const [dst, reader] = await pair();
    sockets.push(writer, src, dst, reader);
    const done = relay(src, dst, 1024 * 1024);
    writer.write('some bytes');
    src.destroy(new Error('boom'));
    await expect(done).rejects.toThrow('boom');
    expect(dst.destroyed).toBe(true);
  });
});
