import { createHash, randomBytes } from 'node:crypto';
import type net from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { privilegedDescribe } from '../../helpers/privileged.js';
import { createHarness, type Harness } from './harness.js';
import type { Flow, FlowEndReason } from '../../../src/engine/flow/index.js';
import { until } from '../../helpers/until.js';

function readAll(socket: net.Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.once('end', () => resolve(Buffer.concat(chunks)));
    socket.once('error', reject);
  });
}

privilegedDescribe('TCP upgrade through the TUN namespace (downgrader → SEQPACKET on-ramp → edge)', () => {
  let h: Harness;
  const ended: [Flow, FlowEndReason][] = [];
  const started: Flow[] = [];

  beforeAll(async () => {
    h = await createHarness({
      onFlowStart: (flow) => started.push(flow),
      onFlowEnd: (flow, reason) => ended.push([flow, reason]),
      timeouts: { tcpCloseLingerMs: 200 },
    });
  });
  afterAll(() => h?.close());

  it('echoes a TCP stream and reports flow start and end with counters', async () => {
    const t = await h.tunnel({ tenant: 'acme', vnet: 'default' });
    try {
      const socket = await t.session.connect({ src: '198.18.1.1', srcPort: 40001, dst: '198.18.2.2', dstPort: 7 });
      const done = readAll(socket);
      socket.end('hello, upgrade');
      expect((await done).toString()).toBe('hello, upgrade');
      await until(
        () => ended.find(([f]) => f.dstPort === 7),
        5000,
        () => `the flow to port 7 to end; ended: ${ended.map(([f, r]) => `${f.srcPort}→${f.dstPort} ${r}`).join(', ') || 'none'}`,
      );
      const [flow, reason] = ended.find(([f]) => f.dstPort === 7)!;
      expect(reason).toBe('fin');
      expect(flow.tenant).toBe('acme');
      expect(flow.toString()).toContain('198.18.1.1:40001 > 198.18.2.2:7');
      expect(flow.packetsIn).toBeGreaterThanOrEqual(4);
      expect(flow.packetsOut).toBeGreaterThanOrEqual(3);
      expect(flow.bytesIn).toBeGreaterThan(14);
      expect(started).toContain(flow);
      expect(h.edge.upgrader.activeSlots).toBe(0);
    } finally {
      t.close();
    }
  });

  it('carries 100 MB with matching sha256 each way', async () => {
    const t = await h.tunnel({ tenant: 'acme', vnet: 'default' });
    try {
      const socket = await t.session.connect({ src: '198.18.1.1', srcPort: 40002, dst: '198.18.2.2', dstPort: 9000 });
      const total = 100 * 1024 * 1024;
      const block = randomBytes(1024 * 1024);
      const sent = createHash('sha256');
      const received = createHash('sha256');
      let receivedBytes = 0;
      const done = new Promise<void>((resolve, reject) => {
        socket.on('data', (c: Buffer) => {
          received.update(c);
          receivedBytes += c.length;
        });
        socket.once('end', resolve);
        socket.once('error', reject);
      });
      const started = Date.now();
      for (let i = 0; i < total / block.length; i++) {
        const chunk = Buffer.from(block);
        chunk.writeUInt32BE(i, 0);
        sent.update(chunk);
        if (!socket.write(chunk)) await new Promise((r) => socket.once('drain', r));
      }
      socket.end();
      await done;
      const seconds = (Date.now() - started) / 1000;
      console.log(`100 MB echoed through downgrade+upgrade in ${seconds.toFixed(2)} s (${((2 * total * 8) / seconds / 1e9).toFixed(2)} Gbit/s both ways)`);
      expect(receivedBytes).toBe(total);
      expect(received.digest('hex')).toBe(sent.digest('hex'));
    } finally {
      t.close();
    }
  }, 60_000);
});
