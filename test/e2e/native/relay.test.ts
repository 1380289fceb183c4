// PacketRelay: a TUN relayed to a SEQPACKET socket inside the addon (what `warp connect`
// runs on a device). The test holds the other end of a socketpair, as the edge would.
//
//   namespace: TUN oxyrly0 with 198.18.5.1/24, route 198.18.6.0/24 → oxyrly0
//   kernel socket 198.18.5.1:P ⇄ TUN ⇄ relay ⇄ socketpair ⇄ test ("host" 198.18.6.7:9999)
import type dgram from 'node:dgram';
import { afterEach, expect, it } from 'vitest';

import { PacketRelay, SeqpacketSocket, Tun, withNetns } from '../../../src/engine/native/index.js';
import { native } from '../../../src/engine/native/binding.js';
import { useNetns } from '../../helpers/netns.js';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { buildUdp4, parseUdp4 } from './packets.js';
import { bindDgramSync } from './support.js';

const LOCAL = '198.18.5.1';
const REMOTE = '198.18.6.7';
const REMOTE_PORT = 9999;

/** Resolves once `check` holds (polled), or rejects after `ms`. */
async function until(check: () => boolean, what: () => string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(what());
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** What reaches the namespace's UDP socket and JS from the relay, and whether it ended. */
function watch(relay: PacketRelay, socket: dgram.Socket): { got: string[]; messages: string[]; ended: boolean } {
  const seen = { got: [] as string[], messages: [] as string[], ended: false };
  socket.on('message', (msg) => seen.got.push(msg.toString()));
  relay.on('message', (data) => seen.messages.push(data.toString()));
  relay.on('end', () => (seen.ended = true));
  return seen;
}

// The ways the relay runs: the packet-relay thread with io_uring (the default), the same thread with
// epoll (OXY_RELAY_URING=0, or where io_uring is refused) and the JS thread's loop (OXY_RELAY_THREAD=0).
const MODES = [
  { thread: true, ring: true, name: 'relay thread, io_uring' },
  { thread: true, ring: false, name: 'relay thread, epoll' },
  { thread: false, ring: false, name: 'event loop' },
];
for (const { thread, ring, name } of MODES)
  privilegedDescribe(`PacketRelay (network namespace, ${name})`, () => {
    const ns = useNetns('oxy-relay');
    const closers: { close(): void }[] = [];
    afterEach(() => {
      for (const c of closers.splice(0).reverse()) c.close();
    });

    function open(): { tun: Tun; peer: SeqpacketSocket; mine: number; socket: dgram.Socket } {
      const namespace = ns();
      const tun = withNetns(namespace.path, () => Tun.open({ name: 'oxyrly0', mtu: 1500, txQueueLength: 5000, up: true }));
      closers.push(tun);
      namespace.ipBatch([`addr add ${LOCAL}/24 dev oxyrly0`, 'route add 198.18.6.0/24 dev oxyrly0']);
      const [mine, theirs] = native().seqpacketPair();
      const peer = SeqpacketSocket.fromFd(theirs);
      peer.on('error', () => undefined);
      closers.push(peer);
      const socket = withNetns(namespace.path, () => bindDgramSync('udp4', LOCAL));
      closers.push(socket);
      return { tun, peer, mine, socket };
    }

    function setup(sendBufferSize?: number): { relay: PacketRelay; peer: SeqpacketSocket; socket: dgram.Socket } {
      const { tun, peer, mine, socket } = open();
      const relay = PacketRelay.attach(tun, mine, { sendBufferSize, thread, ring });
      relay.on('error', () => undefined);
      closers.push(relay);
      return { relay, peer, socket };
    }

    it('sends its first message before any packet, even with packets waiting in the TUN', async () => {
      const { tun, peer, mine, socket } = open();
      // Nobody reads the TUN (paused, as attach() would): the relay finds these queued when it starts
      // (on the relay thread it reads them at once, before attach() has returned).
      tun.pause();
      let sent = 0;
      for (let i = 0; i < 20; i++) socket.send(Buffer.from(`queued ${i}`), REMOTE_PORT, REMOTE, () => sent++);
      const got: string[] = [];
      peer.on('message', (data) => {
        const udp = parseUdp4(data);
        got.push(udp ? String(udp.payload) : `first: ${String(data)}`);
      });
      await until(
        () => sent === 20,
        () => `${sent} of 20 datagrams sent`,
      );
      const relay = PacketRelay.attach(tun, mine, { thread, ring, first: Buffer.from('{"context":1}') });
      relay.on('error', () => undefined);
      closers.push(relay);
      await until(
        () => got.filter((g) => g.startsWith('queued')).length === 20,
        () => `${got.length} messages reached the peer: ${got.join(', ')}`,
      );
      expect(got[0]).toBe('first: {"context":1}');
    });

    it('carries kernel packets to the socket and IP messages to the kernel; other messages go to JS; the peer closing ends it', async () => {
      const { relay, peer, socket } = setup();
      const up: Buffer[] = [];
      peer.on('message', (data) => {
        const udp = parseUdp4(data);
        if (udp?.dstPort === REMOTE_PORT) up.push(Buffer.from(udp.payload));
      });
      for (let i = 0; i < 3; i++) socket.send(Buffer.from(`up ${i}`), REMOTE_PORT, REMOTE);
      await until(
        () => up.length === 3,
        () => `${up.length} of 3 packets reached the socket`,
      );
      expect(up.map(String)).toEqual(['up 0', 'up 1', 'up 2']);

      const down = new Promise<{ msg: Buffer; rinfo: dgram.RemoteInfo }>((resolve) => socket.once('message', (msg, rinfo) => resolve({ msg, rinfo })));
      peer.send(buildUdp4(REMOTE, REMOTE_PORT, LOCAL, socket.address().port, Buffer.from('down')));
      const { msg, rinfo } = await down;
      expect(msg.toString()).toBe('down');
      expect(rinfo).toMatchObject({ address: REMOTE, port: REMOTE_PORT });

      const messages: string[] = [];
      relay.on('message', (data) => messages.push(data.toString()));
      peer.send(Buffer.from('{"error":{"message":"no"}}'));
      await until(
        () => messages.length === 1,
        () => 'the non-IP message never reached JS',
      );
      expect(messages).toEqual(['{"error":{"message":"no"}}']);
      expect(relay.stats).toMatchObject({ packetsIn: 1, thread, ring });
      expect(relay.stats.packetsOut).toBeGreaterThanOrEqual(3);

      let ended = false;
      relay.on('end', () => (ended = true));
      peer.close();
      await until(
        () => ended,
        () => 'no end after the peer closed',
      );
    });

    it('a burst read several messages a call: each IP packet reaches the kernel in order, a message between them goes to JS, then the end', async () => {
      const { relay, peer, socket } = setup();
      const seen = watch(relay, socket);
      const port = socket.address().port;
      // All queued before the relay's next wake-up: it reads them in batches (recvmmsg, 8 a call).
      for (let i = 0; i < 30; i++) {
        peer.send(buildUdp4(REMOTE, REMOTE_PORT, LOCAL, port, Buffer.from(`down ${i}`)));
        if (i === 12) peer.send(Buffer.from('{"note":"between"}'));
      }
      await until(
        () => seen.got.length === 30 && seen.messages.length === 1,
        () => `${seen.got.length} of 30 packets reached the kernel socket, ${seen.messages.length} of 1 message JS (${JSON.stringify(relay.stats)})`,
      );
      peer.close();
      await until(
        () => seen.ended,
        () => 'no end after the peer closed',
      );
      expect(seen.got).toEqual(Array.from({ length: 30 }, (_, i) => `down ${i}`));
      expect(seen.messages).toEqual(['{"note":"between"}']);
      expect(relay.stats.packetsIn).toBe(30);
    });

    it('a peer that sends and closes at once: every message it sent reaches the kernel (or JS) before the end', async () => {
      const { relay, peer, socket } = setup();
      const seen = watch(relay, socket);
      // The peer leaves a packet unread (its close then resets the relay's socket: ECONNRESET) ...
      peer.pause();
      socket.send(Buffer.from('unread'), REMOTE_PORT, REMOTE);
      await until(
        () => relay.stats.packetsOut >= 1,
        () => 'no packet reached the socket',
      );
      // ... and one more waits in the TUN, readable before the socket: the relay's send to the
      // gone peer fails before it reads what the peer sent.
      socket.send(Buffer.from('too late'), REMOTE_PORT, REMOTE);
      const port = socket.address().port;
      for (let i = 0; i < 30; i++) peer.send(buildUdp4(REMOTE, REMOTE_PORT, LOCAL, port, Buffer.from(`down ${i}`)));
      peer.send(Buffer.from('{"error":{"message":"last"}}'));
      peer.close(); // same turn: the relay wakes up to the seen.messages and the hang-up together
      await until(
        () => seen.ended,
        () => 'no end after the peer closed',
      );
      await until(
        () => seen.got.length === 30,
        () => `${seen.got.length} of 30 packets reached the kernel socket (${JSON.stringify(relay.stats)})`,
      );
      expect(seen.got).toEqual(Array.from({ length: 30 }, (_, i) => `down ${i}`));
      expect(seen.messages).toEqual(['{"error":{"message":"last"}}']);
    });

    it('holds packets while the socket is full instead of dropping them, in order', async () => {
      // A 64 KiB send buffer fills after a few dozen packets; the rest wait in the TUN's queue.
      const { peer, socket } = setup(64 * 1024);
      peer.pause();
      const count = 2000;
      let sent = 0;
      for (let i = 0; i < count; i++) {
        const payload = Buffer.alloc(1000);
        payload.writeUInt32BE(i);
        socket.send(payload, REMOTE_PORT, REMOTE, () => sent++);
      }
      const seen: number[] = [];
      peer.on('message', (data) => {
        const udp = parseUdp4(data);
        if (udp?.dstPort === REMOTE_PORT) seen.push(udp.payload.readUInt32BE(0));
      });
      // dgram sends are asynchronous: every packet is in the TUN (or past it) before the peer reads.
      await until(
        () => sent === count,
        () => `${sent} of ${count} datagrams sent`,
      );
      peer.resume();
      await until(
        () => seen.length === count,
        () => `${seen.length} of ${count} packets arrived`,
      );
      expect(seen).toEqual(Array.from({ length: count }, (_, i) => i));
    });
  });
