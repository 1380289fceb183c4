// The packet relay's io_uring (cpp/relay.cc's ring mode) where the kernel refuses io_uring_setup
// (ENOSYS: no io_uring; EPERM: kernel.io_uring_disabled or a seccomp filter, as in many
// containers): the relay thread falls back to epoll and relays the same. The refusal is real: strace
// makes the child's io_uring_setup fail with that errno. A SEQPACKET pair stands in for the TUN.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

import { addonPath } from '../../../src/engine/native/binding.js';

const strace = spawnSync('strace', ['-V'], { encoding: 'utf8' }).status === 0;

/** A child relaying 20 packets each way on the relay thread with `ring` asked for; prints its stats as JSON. */
function relayChild(ring: boolean, inject?: string): { status: number | null; out: string } {
  const script = `
    const fs = require('node:fs');
    const addon = require(${JSON.stringify(addonPath())});
    const [tun, tunPeer] = addon.seqpacketPair();
    const [mine, peer] = addon.seqpacketPair();
    const relay = new addon.PacketRelay(tun, mine, { maxPacketSize: 2000, thread: true, ring: ${ring} });
    relay.start(() => {}, () => {}, (e) => console.log('error ' + e.message));
    const packet = (k) => Buffer.concat([Buffer.from([0x45, k]), Buffer.alloc(40, k)]);
    for (let k = 0; k < 20; k++) { fs.writeSync(tunPeer, packet(k)); fs.writeSync(peer, packet(100 + k)); }
    const got = { out: [], in: [] };
    const deadline = Date.now() + 10000;
    const poll = () => {
      const buf = Buffer.alloc(100);
      for (const [fd, list] of [[peer, got.out], [tunPeer, got.in]]) {
        try { for (;;) { const n = fs.readSync(fd, buf); list.push(buf[1]); if (n === 0) break; } } catch {}
      }
      if ((got.out.length < 20 || got.in.length < 20) && Date.now() < deadline) return setTimeout(poll, 5);
      console.log(JSON.stringify({ stats: relay.stats(), got }));
      relay.close();
    };
    poll();`;
  const inner = ['-e', script];
  const command = inject ? 'strace' : process.execPath;
  const args = inject
    ? ['-f', '-qq', '-o', '/dev/null', '-e', 'trace=io_uring_setup', '-e', `inject=io_uring_setup:error=${inject}`, process.execPath, ...inner]
    : inner;
  const result = spawnSync(command, args, { encoding: 'utf8', timeout: 25_000 });
  return { status: result.status, out: `${result.stdout}${result.stderr}` };
}

const order = (from: number) => Array.from({ length: 20 }, (_, k) => from + k);

describe('the packet relay on io_uring', () => {
  it('relays both ways on the ring where the kernel allows it', () => {
    const { status, out } = relayChild(true);
    expect(status).toBe(0);
    const result = JSON.parse(out.trim().split('\n').pop() ?? '{}');
    expect(result.stats).toMatchObject({ thread: true, ring: true, packetsOut: 20, packetsIn: 20 });
    expect(result.got).toEqual({ out: order(0), in: order(100) });
  });

  for (const errno of ['ENOSYS', 'EPERM'])
    it.skipIf(!strace)(`falls back to epoll when io_uring_setup fails with ${errno}, and relays the same`, () => {
      const { status, out } = relayChild(true, errno);
      expect(status).toBe(0);
      const result = JSON.parse(out.trim().split('\n').pop() ?? '{}');
      expect(result.stats).toMatchObject({ thread: true, ring: false, packetsOut: 20, packetsIn: 20 });
      expect(result.got).toEqual({ out: order(0), in: order(100) });
    });
});
