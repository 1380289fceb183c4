/**
 * The native fast path (native/fast-nat.ts): an established upgraded TCP flow of a SEQPACKET
 * client passes between its socket and the TUN without JS, yet the flow table still sees its
 * traffic (counters at the end, lastSeen for the idle sweep) and JS still closes it on FIN.
 */
import { createHash, randomBytes } from 'node:crypto';
import type net from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { privilegedDescribe } from '../../helpers/privileged.js';
import { createHarness, type Harness } from './harness.js';
import type { Flow, FlowEndReason } from '../../../src/engine/flow/index.js';

privilegedDescribe('IP edge fast path for established TCP flows', () => {
  let h: Harness;
  const ended: [Flow, FlowEndReason][] = [];

  beforeAll(async () => {
    h = await createHarness({
      onFlowEnd: (flow, reason) => ended.push([flow, reason]),
      timeouts: { tcpCloseLingerMs: 200, tcpIdleMs: 1500 },
      fastPath: true,
    });
  });
  afterAll(() => h?.close());

  const endOf = async (dstPort: number) => {
    await expect.poll(() => ended.find(([f]) => f.dstPort === dstPort), { timeout: 10_000 }).toBeTruthy();
    return ended.find(([f]) => f.dstPort === dstPort)!;
  };

  it.each([
    { family: 'IPv4', src: '198.18.1.1', dst: '198.18.2.2', port: 7001 },
    { family: 'IPv6', src: '2001:db8:1::1', dst: '2001:db8:2::2', port: 7003 },
  ])(
    '$family: carries an echoed stream byte-exact without JS per packet, and still counts it and ends it on FIN',
    async ({ src, dst, port }) => {
      const t = await h.tunnel({ tenant: 'acme', vnet: 'default' });
      try {
        const socket = await t.session.connect({ src, srcPort: 41001, dst, dstPort: port });
        const before = h.edge.upgrader.fastNat.totals;
        const total = 8 * 1024 * 1024;
        await echoIntact(socket, total);
        const after = h.edge.upgrader.fastNat.totals;
        const fastIn = after.toKernel - before.toKernel;
        const fastOut = after.toClients - before.toClients;
        // Most of the flow's packets went natively, both ways.
        expect(fastIn).toBeGreaterThan(10);
        expect(fastOut).toBeGreaterThan(10);
        const [flow, reason] = await endOf(port);
        // Ended by the close (JS saw the FINs), not left to the idle sweep. ('rst' too: under load the
        // namespace's kernel sometimes resets after both FINs, with the fast path off as well.)
        expect(['fin', 'rst']).toContain(reason);
        // The flow's counters include what passed natively.
        expect(flow.packetsIn).toBeGreaterThan(fastIn);
        expect(flow.packetsOut).toBeGreaterThan(fastOut);
        expect(flow.bytesIn).toBeGreaterThan(total);
        expect(flow.bytesOut).toBeGreaterThan(total);
        expect(h.edge.upgrader.activeSlots).toBe(0);
      } finally {
        t.close();
      }
    },
    30_000,
  );

  it('a short flow: only SYN and the close go through JS; the handshake ACK and the data pass natively', async () => {
    const t = await h.tunnel({ tenant: 'acme', vnet: 'default' });
    try {
      const jsBefore = h.edge.upgrader.stats.toKernel;
      const fastBefore = h.edge.upgrader.fastNat.totals.toKernel;
      const socket = await t.session.connect({ src: '198.18.1.1', srcPort: 41004, dst: '198.18.2.2', dstPort: 7004 });
      const echoed = new Promise<string>((resolve) => socket.once('data', (c: Buffer) => resolve(c.toString())));
      socket.write('hello');
      expect(await echoed).toBe('hello');
      // SYN only so far; the ACK that completed the handshake and 'hello' went natively.
      expect(h.edge.upgrader.stats.toKernel - jsBefore).toBe(1);
      expect(h.edge.upgrader.fastNat.totals.toKernel - fastBefore).toBeGreaterThanOrEqual(2);
      socket.on('data', () => undefined);
      socket.end();
      await endOf(7004);
    } finally {
      t.close();
    }
  });

  it('a flow busy only on the fast path is not idle; once silent it is', async () => {
    const t = await h.tunnel({ tenant: 'acme', vnet: 'default' });
    try {
      const socket: net.Socket = await t.session.connect({ src: '198.18.1.1', srcPort: 41002, dst: '198.18.2.2', dstPort: 7002 });
      socket.on('data', () => undefined);
      socket.on('error', () => undefined);
      const before = h.edge.upgrader.fastNat.totals.toKernel;
      // 3 s of traffic, twice the idle timeout, a write every 200 ms.
      for (let i = 0; i < 15; i++) {
        socket.write('tick');
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(h.edge.upgrader.fastNat.totals.toKernel - before).toBeGreaterThan(10);
      expect(ended.find(([f]) => f.dstPort === 7002)).toBeUndefined();
      // Silent now: the sweep ends it after the idle timeout.
      const [, reason] = await endOf(7002);
      expect(reason).toBe('idle');
      socket.destroy();
    } finally {
      t.close();
    }
  }, 30_000);
});

privilegedDescribe('IP edge fast path when a client socket is full', () => {
  let h: Harness;

  beforeAll(async () => {
    // A small send buffer (two 64 KB segments at most): a TUN batch's packets for the client
    // overflow it, and what the socket refuses goes to JS, which queues it behind in order.
    h = await createHarness({ timeouts: { tcpCloseLingerMs: 200 }, fastPath: true }, { sendBufferSize: 64 * 1024 });
  });
  afterAll(() => h?.close());

  it('the packets it refuses arrive after those it took, byte-exact', async () => {
    const t = await h.tunnel({ tenant: 'acme', vnet: 'default' });
    try {
      const socket = await t.session.connect({ src: '198.18.1.1', srcPort: 41005, dst: '198.18.2.2', dstPort: 7005 });
      const before = h.edge.upgrader.fastNat.totals;
      await echoIntact(socket, 8 * 1024 * 1024);
      const after = h.edge.upgrader.fastNat.totals;
      expect(after.toClients - before.toClients).toBeGreaterThan(10);
      expect(after.refused - before.refused).toBeGreaterThan(0);
      expect(after.lost - before.lost).toBe(0);
    } finally {
      t.close();
    }
  }, 30_000);
});

/** Writes `total` random bytes and ends; the echo must come back whole and byte-exact before the peer's end. */
async function echoIntact(socket: net.Socket, total: number): Promise<void> {
  const data = randomBytes(total);
  const received: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    socket.on('data', (c: Buffer) => received.push(c));
    socket.once('end', resolve);
    socket.once('error', reject);
  });
  socket.end(data);
  await done;
  const echoed = Buffer.concat(received);
  expect(echoed.length).toBe(total);
  expect(createHash('sha256').update(echoed).digest('hex')).toBe(createHash('sha256').update(data).digest('hex'));
}
