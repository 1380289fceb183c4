/**
 * A "device": a test namespace with a TUN whose packets the main thread carries over a
 * SEQPACKET connection to the edge's connected IP on-ramp (what WARP does), so real
 * programs in the namespace (curl, iperf3) reach what the edge serves behind the upgrade.
 *
 * Device namespace: oxdev0 198.18.1.1/32, route 198.18.2.0/24 (and 2001:db8:2::/64) via
 * oxdev0, MTU 65000 so big segments cross (pass a smaller `mtu` to make its kernel fragment).
 */
import type { ChildProcess } from 'node:child_process';
import { expect } from 'vitest';

import { IpEdge, type IpEdgeOptions } from '../../../src/engine/edge/ip/index.js';
import { SeqpacketSocket, Tun, withNetns } from '../../../src/engine/native/index.js';
import type { TestNetns } from '../../helpers/netns.js';

export interface Device {
  tun: Tun;
  socket: SeqpacketSocket;
  close(): void;
}

/**
 * The device's TUN `name` in `ns`: 198.18.1.1 (and 2001:db8:1::1 unless `ipv6: false`), routes to
 * 198.18.2.0/24 (and 2001:db8:2::/64) through it.
 */
export function openDeviceTun(ns: TestNetns, name: string, o: { mtu?: number; partialChecksums?: boolean; ipv6?: boolean } = {}): Tun {
  const tun = withNetns(ns.path, () =>
    Tun.open({
      name,
      mtu: o.mtu ?? 65000,
      txQueueLength: 5000,
      batchSize: 128,
      ...(o.partialChecksums === undefined ? {} : { partialChecksums: o.partialChecksums }),
    }),
  );
  const ipv6 = o.ipv6 !== false;
  ns.ipBatch([
    `link set ${name} addrgenmode none`,
    `addr add 198.18.1.1/32 dev ${name}`,
    ...(ipv6 ? [`addr add 2001:db8:1::1/128 dev ${name} nodad`] : []),
    `link set ${name} up`,
    `route add 198.18.2.0/24 dev ${name}`,
    ...(ipv6 ? [`route add 2001:db8:2::/64 dev ${name}`] : []),
  ]);
  return tun;
}

/** An edge whose upgraded TCP streams echo what they read. */
export function echoEdge(upgrade: IpEdgeOptions['upgrade']): Promise<IpEdge> {
  return IpEdge.create({
    upgrade,
    onTcpStream(socket) {
      socket.on('error', () => socket.destroy());
      socket.pipe(socket);
    },
  });
}

/**
 * `bytes` from the device namespace to host:port and back through an echoEdge, byte-exact, the
 * bulk on the fast path (more than 10 packets each way through the edge's fast NAT).
 */
export async function expectFastEcho(ns: TestNetns, edge: IpEdge, host: string, port: number, bytes: number): Promise<void> {
  const before = edge.upgrader.fastNat.totals;
  const result = await run(ns.spawn(process.execPath, ['-e', ECHO_CLIENT, host, String(port), String(bytes)]), 30_000);
  expect(result.stderr).toBe('');
  const echo = JSON.parse(result.stdout) as { sent: string; got: string; received: number };
  expect(echo.received).toBe(bytes);
  expect(echo.got).toBe(echo.sent);
  const after = edge.upgrader.fastNat.totals;
  expect(after.toKernel - before.toKernel).toBeGreaterThan(10);
  expect(after.toClients - before.toClients).toBeGreaterThan(10);
}

export function attachDevice(ns: TestNetns, onRampPath: string, context: object, mtu = 65000): Device {
  const tun = openDeviceTun(ns, 'oxdev0', { mtu });
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
