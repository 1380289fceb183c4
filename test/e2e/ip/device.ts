/**
 * A "device": a test namespace with a TUN whose packets the main thread carries over a
 * SEQPACKET connection to the edge's connected IP on-ramp (what WARP does), so real
 * programs in the namespace (curl, iperf3) reach what the edge serves behind the upgrade.
 *
 * Device namespace: oxdev0 198.18.1.1/32, route 198.18.2.0/24 (and 2001:db8:2::/64) via
 * oxdev0, MTU 65000 so big segments cross (pass a smaller `mtu` to make its kernel fragment).
 */
import type { ChildProcess } from 'node:child_process';

import { SeqpacketSocket, Tun, withNetns } from '../../../src/engine/native/index.js';
import type { TestNetns } from '../../helpers/netns.js';

export interface Device {
  tun: Tun;
  socket: SeqpacketSocket;
  close(): void;
}

export function attachDevice(ns: TestNetns, onRampPath: string, context: object, mtu = 65000): Device {
  const tun = withNetns(ns.path, () => Tun.open({ name: 'oxdev0', mtu, txQueueLength: 5000, batchSize: 128 }));
  ns.ipBatch([
    'link set oxdev0 addrgenmode none',
    'addr add 198.18.1.1/32 dev oxdev0',
    'addr add 2001:db8:1::1/128 dev oxdev0 nodad',
    'link set oxdev0 up',
    'route add 198.18.2.0/24 dev oxdev0',
    'route add 2001:db8:2::/64 dev oxdev0',
  ]);
  const socket = SeqpacketSocket.connect(onRampPath, { maxMessageSize: 65535 + 64, batchSize: 128 });
  socket.send(Buffer.from(JSON.stringify(context)));
  tun.on('packets', (batch) => {
    for (let i = 0; i < batch.count; i++) {
      try {
        socket.send(batch.packet(i));
      } catch {
        // Tunnel gone: drop, as a link would.
      }
    }
  });
  const pending: Buffer[] = [];
  let scheduled = false;
  socket.on('message', (packet) => {
    pending.push(packet);
    if (!scheduled) {
      scheduled = true;
      queueMicrotask(() => {
        scheduled = false;
        try {
          tun.writeBatch(pending.splice(0, pending.length));
        } catch {
          // A packet the kernel refused: the test will notice missing data.
        }
      });
    }
  });
  tun.on('error', () => {});
  socket.on('error', () => {});
  return {
    tun,
    socket,
    close() {
      socket.close();
      tun.close();
    },
  };
}

/** Runs a command in the device namespace without blocking the event loop (the edge runs on it). */
export function run(child: ChildProcess, timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

// Sends `bytes` random bytes to host:port, reads the echo, and prints both sha256s and the count.
export const ECHO_CLIENT = `
const net = require('node:net');
const { createHash, randomBytes } = require('node:crypto');
const [host, port, bytes] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const sent = createHash('sha256'), got = createHash('sha256');
let received = 0;
const socket = net.connect({ host, port }, () => {
  let left = bytes;
  const more = () => {
    while (left > 0) {
      const chunk = randomBytes(Math.min(left, 256 * 1024));
      left -= chunk.length;
      sent.update(chunk);
      if (!socket.write(chunk)) return void socket.once('drain', more);
    }
    socket.end();
  };
  more();
});
socket.on('data', (c) => { received += c.length; got.update(c); });
socket.on('end', () => console.log(JSON.stringify({ sent: sent.digest('hex'), got: got.digest('hex'), received })));
socket.on('error', (err) => { console.error(err.message); process.exit(1); });
`;
