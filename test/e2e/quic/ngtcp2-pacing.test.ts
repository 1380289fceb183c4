// With OXY_QUIC_PACING=far (opt-in) ngtcp2 paces only a far path: one whose min RTT is 1 ms or
// more. On a near one (this veth: tens of µs) a smoothed RTT above ~1.25 ms, where ngtcp2 0.12's
// pacing starts to hold a sender, is a stall's, not the path's: one RTT sample of a process held off
// a CPU paced the connector's window-limited -R sender at cwnd per smoothed RTT until later samples
// brought the average down (docs/decisions.md "The vnet path's -R: the device's out-of-order
// segments were wireguard-go's"). Here the process holding both ends stops for STALL_MS three
// times in an upload (the ACKs in flight are read that much later: RTT samples of ~STALL_MS);
// counted from the first stall on, the sender stops on pacing 0 times with =far, and more than 0
// by default (every path paced: =far lost device → host in quiet pairs). Bytes intact either way.
//
//   client netns  cli0 198.18.19.100/24 ── veth ── srv0 198.18.19.1/24  server netns
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { expect, it } from 'vitest';
import type { NativeQuicCounters } from '../../../src/engine/native/binding.js';
import type { Ngtcp2TunnelConnection } from '../../../src/engine/transport/quic/index.js';
import { withEnv } from '../../helpers/env.js';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { sha256 } from '../../unit/quic/support.js';
import { ngtcp2Connect, ngtcp2VethSuite } from './ngtcp2-netns.js';

const SERVER = '198.18.19.1';
const SIZE = 32 * 1024 * 1024;
/** Where the process stalls: these shares of SIZE received at the server. */
const STALLS = [0.25, 0.45, 0.65];
const STALL_MS = 40;
const ROUND_TRIPS = 20;

/** The thread (both ends' event loop) held for `ms`, as a process that waits for a CPU. */
const stall = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

privilegedDescribe("ngtcp2's pacing on a near path after a stall (OXY_QUIC_PACING)", () => {
  const pair = ngtcp2VethSuite('oxy-pace', SERVER, '198.18.19.100');

  /** SIZE bytes client → server with STALLS: the client's counters at the first stall and at the end, its largest smoothed RTT after it. */
  async function stalledUpload() {
    const { conn, edge } = await ngtcp2Connect(pair);
    const client = conn as Ngtcp2TunnelConnection;
    const acceptedStream = edge.acceptStream();
    const stream = await conn.openStream();
    const peer = await acceptedStream;
    // Round trips of one byte each way first: a lone packet answered at once (the ACK rides on the
    // echo) sets the path's min RTT. A bulk's samples alone can stay near 1 ms here, where one
    // thread runs both ends and an RTT takes in whole bursts' turns (up to 954 µs seen).
    for (let i = 0; i < ROUND_TRIPS; i++) {
      const echoed = once(stream, 'data');
      const [ping] = await Promise.all([once(peer, 'data'), stream.write('p')]);
      peer.write(ping[0]);
      await echoed;
    }
    const paced = client.quicStats().counters!;
    const up = randomBytes(SIZE);
    let before: NativeQuicCounters | undefined;
    let maxRttMs = 0;
    let got = 0;
    let next = 0;
    const chunks: Buffer[] = [];
    const received = new Promise<Buffer>((resolve, reject) => {
      peer.on('data', (c: Buffer) => {
        chunks.push(c);
        got += c.length;
        if (before) maxRttMs = Math.max(maxRttMs, client.quicStats().rttMs);
        if (next < STALLS.length && got >= STALLS[next] * SIZE) {
          next++;
          before ??= { ...client.quicStats().counters! };
          setImmediate(() => stall(STALL_MS));
        }
      });
      peer.once('end', () => resolve(Buffer.concat(chunks)));
      peer.once('error', reject);
    });
    for (let off = 0; off < SIZE; off += 256 * 1024) stream.write(up.subarray(off, off + 256 * 1024));
    stream.end();
    peer.resume();
    expect(sha256(await received)).toBe(sha256(up));
    const after = client.quicStats().counters!;
    // The stream's other half closed too, so that closing the connection ends no stream in use.
    const ended = new Promise((r) => stream.once('end', r));
    stream.resume();
    peer.end();
    await ended;
    expect(next).toBe(STALLS.length);
    return { before: before!, after, maxRttMs, minRttUs: paced.minRttUs };
  }

  it('OXY_QUIC_PACING=far: a near path is not paced, no pacing stops after the stalls inflated the smoothed RTT; bytes intact', async () => {
    const { before, after, maxRttMs, minRttUs } = await withEnv({ OXY_QUIC_PACING: 'far' }, () => stalledUpload());
    expect(minRttUs).toBeLessThan(1000);
    // The stalls did what they stand for: a smoothed RTT where ngtcp2 0.12's pacing holds a sender.
    expect(maxRttMs).toBeGreaterThan(1.25);
    expect(after.stopPacing - before.stopPacing).toBe(0);
    expect(after.unpaced - before.unpaced).toBeGreaterThan(0);
  }, 60_000);

  it('by default every path is paced: the sender stops on pacing after the stalls; bytes intact', async () => {
    const { before, after, maxRttMs } = await withEnv({ OXY_QUIC_PACING: undefined }, () => stalledUpload());
    expect(maxRttMs).toBeGreaterThan(1.25);
    expect(after.stopPacing - before.stopPacing).toBeGreaterThan(0);
    expect(after.unpaced).toBe(0);
  }, 60_000);
});
