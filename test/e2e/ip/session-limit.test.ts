/**
 * The per-session flow limit (limits.maxFlowsPerSession) bounds the flows that hold a stream;
 * a TCP flow past both FINs only lingers for the last ACKs (tcpCloseLingerMs) and no longer
 * counts. Counted, a device opening short connections one after another hit the limit within
 * the linger and every SYN beyond it was reset (bench/vnet-path.js's "slow mode" of flow setup).
 */
import type net from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { privilegedDescribe } from '../../helpers/privileged.js';
import { createHarness, type Harness } from './harness.js';

const LIMIT = 3;

privilegedDescribe('IP edge: the session limit counts open flows, not lingering ones', () => {
  let h: Harness;

  beforeAll(async () => {
    // A linger far longer than the test: every closed flow is still in the table at the end.
    h = await createHarness({ limits: { maxFlowsPerSession: LIMIT }, timeouts: { tcpCloseLingerMs: 60_000 } });
  });
  afterAll(() => h?.close());

  /** Opens a connection, sees its echo, closes it gracefully and waits for the close to finish. */
  const shortConnection = async (t: Awaited<ReturnType<Harness['tunnel']>>, srcPort: number): Promise<void> => {
    const socket = await t.session.connect({ src: '198.18.1.1', srcPort, dst: '198.18.2.2', dstPort: 7100 });
    const echoed: Buffer[] = [];
    await new Promise<void>((resolve, reject) => {
      socket.on('data', (c: Buffer) => echoed.push(c));
      socket.once('end', resolve);
      socket.once('error', reject);
      socket.end('ping');
    });
    expect(Buffer.concat(echoed).toString()).toBe('ping');
    // Both FINs have passed the edge (the echo's FIN reached the client): the flow lingers.
    await expect.poll(() => [...h.edge.table.flows()].find((f) => f.srcPort === srcPort)?.closingSince ?? 0, { timeout: 5_000 }).not.toBe(0);
  };

  it('open flows beyond the limit are refused; closed ones lingering do not count', async () => {
    const t = await h.tunnel({ tenant: 'acme', vnet: 'limit' });
    const open: net.Socket[] = [];
    try {
      for (let i = 0; i < LIMIT; i++) open.push(await t.session.connect({ src: '198.18.1.1', srcPort: 42000 + i, dst: '198.18.2.2', dstPort: 7100 }));
      // The limit holds for flows that are open: the next SYN is reset.
      await expect(t.session.connect({ src: '198.18.1.1', srcPort: 42010, dst: '198.18.2.2', dstPort: 7100 })).rejects.toThrow();
      const refused = h.edge.table.stats.refused['session-limit'];
      expect(refused).toBeGreaterThanOrEqual(1);
      for (const s of open) s.destroy();
      // Their closes have passed the edge (lingering or ended): none counts any more.
      await expect.poll(() => [...h.edge.table.flows()].filter((f) => f.srcPort < 42003 && f.closingSince === 0).length, { timeout: 5_000 }).toBe(0);
      // Four times the limit of short connections, one after another, all within the linger.
      for (let i = 0; i < 4 * LIMIT; i++) await shortConnection(t, 42100 + i);
      const lingering = [...h.edge.table.flows()].filter((f) => f.closingSince !== 0 && f.srcPort >= 42100);
      expect(lingering.length).toBe(4 * LIMIT);
      expect(h.edge.table.stats.refused['session-limit']).toBe(refused);
    } finally {
      t.close();
    }
  }, 60_000);

  it('short connections back to back: those whose FINs passed natively no longer count, before any sweep', async () => {
    const t = await h.tunnel({ tenant: 'acme', vnet: 'limit-fast' });
    try {
      const refused = h.edge.table.stats.refused['session-limit'];
      // The FINs pass the fast path (nativeFins): the table reads them when the limit is reached,
      // not only at its sweep (a second apart here), so none of these is refused.
      for (let i = 0; i < 4 * LIMIT; i++) {
        const socket = await t.session.connect({ src: '198.18.1.1', srcPort: 42200 + i, dst: '198.18.2.2', dstPort: 7100 });
        await new Promise<void>((resolve, reject) => {
          socket.resume();
          socket.once('end', resolve);
          socket.once('error', reject);
          socket.end('ping');
        });
      }
      expect(h.edge.table.stats.refused['session-limit']).toBe(refused);
      // Each flow is in the table, closing, whether or not a sweep ran meanwhile.
      const flows = [...h.edge.table.flows()].filter((f) => f.srcPort >= 42200 && f.srcPort < 42200 + 4 * LIMIT);
      expect(flows.length).toBe(4 * LIMIT);
      await expect.poll(() => flows.filter((f) => f.closingSince === 0).length, { timeout: 5_000 }).toBe(0);
    } finally {
      t.close();
    }
  }, 60_000);
});
