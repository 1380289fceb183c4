/**
 * Native SYNs (IpEdgeOptions.nativeSyn): once a session's flow to a destination and port was
 * upgraded, the addon registers that session's later SYNs there and writes them to the TUN in its
 * read batch, before JS; JS takes each flow in the same turn (limits, the decision again,
 * onFlowStart) and resets it if it would not start it now. Deny by default holds: a destination
 * never admitted goes to decideFlow, a route gone resets the next SYN and sends the ones after it
 * to JS again, and the session limit keeps counting. OXY_IP_NATIVE_SYN=0: every SYN through JS.
 */
import type net from 'node:net';
import { afterEach, expect, it } from 'vitest';

import { privilegedDescribe } from '../../helpers/privileged.js';
import { createHarness, type Harness } from './harness.js';
import type { Flow, FlowDecision } from '../../../src/engine/flow/index.js';

const SRC = '198.18.1.1';
const ROUTED = '198.18.2.2';
const OTHER = '198.18.2.3';

/** Connects, sees its echo, and closes. */
async function echo(socket: net.Socket): Promise<void> {
  const got: Buffer[] = [];
  await new Promise<void>((resolve, reject) => {
    socket.on('data', (c: Buffer) => got.push(c));
    socket.once('end', resolve);
    socket.once('error', reject);
    socket.end('ping');
  });
  expect(Buffer.concat(got).toString()).toBe('ping');
}

/**
 * A connection the edge refused: its connect fails, or (the SYN-ACK came before the edge's RST)
 * it closes without an echo.
 */
async function refused(connecting: Promise<net.Socket>): Promise<void> {
  let socket: net.Socket;
  try {
    socket = await connecting;
  } catch {
    return;
  }
  const got: Buffer[] = [];
  await new Promise<void>((resolve) => {
    socket.on('data', (c: Buffer) => got.push(c));
    socket.on('error', () => {});
    socket.once('close', () => resolve());
    socket.end('ping');
  });
  expect(Buffer.concat(got).toString()).toBe('');
}

privilegedDescribe('IP edge: native SYNs', () => {
  let h: Harness | undefined;
  afterEach(() => {
    h?.close();
    h = undefined;
    delete process.env.OXY_IP_NATIVE_SYN;
  });

  /** An edge whose routes are `routed` (a destination address each); every decision and start recorded. */
  const edge = async (routed: Set<string>, limits?: { maxFlowsPerSession: number }, fastClose?: boolean) => {
    const order: string[] = [];
    const decision: FlowDecision = { verdict: 'upgrade' };
    const covered = (flow: Flow) => routed.has([...flow.dst].join('.'));
    h = await createHarness({
      limits,
      upgrade: { fastClose },
      decideFlow(flow) {
        order.push(`decide ${flow.srcPort}`);
        return covered(flow) ? decision : 'reject';
      },
      nativeSyn(flow) {
        order.push(`native ${flow.srcPort}`);
        return covered(flow) ? decision : undefined;
      },
      onFlowStart(flow) {
        order.push(`start ${flow.srcPort}`);
      },
    });
    return order;
  };

  it('later SYNs to an upgraded destination start natively; JS decides again and starts each', async () => {
    const routed = new Set([ROUTED]);
    const order = await edge(routed);
    const t = await h!.tunnel({ tenant: 'acme', vnet: 'syn' });
    try {
      for (let i = 0; i < 6; i++) await echo(await t.session.connect({ src: SRC, srcPort: 43000 + i, dst: ROUTED, dstPort: 7100 }));
      // The first through decideFlow; the five after it registered by the addon, each then admitted by JS.
      expect(h!.edge.stats.nativeSyns).toBe(5);
      expect(order).toEqual(['decide 43000', 'start 43000', ...[1, 2, 3, 4, 5].flatMap((i) => [`native ${43000 + i}`, `start ${43000 + i}`])]);
      // A destination never upgraded for this session: decideFlow's, which refuses it.
      await expect(t.session.connect({ src: SRC, srcPort: 43010, dst: OTHER, dstPort: 7100 })).rejects.toThrow();
      // Another port of the routed host: not admitted either (decided by JS, upgraded).
      await echo(await t.session.connect({ src: SRC, srcPort: 43011, dst: ROUTED, dstPort: 7101 }));
      expect(order.slice(12)).toEqual(['decide 43010', 'decide 43011', 'start 43011']);
      expect(h!.edge.stats.nativeSyns).toBe(5);

      // The route goes: the next SYN there, registered by the addon, is refused by JS (reset both
      // ways, no flow, its slot back), and the one after it goes to decideFlow again.
      routed.delete(ROUTED);
      const slots = h!.edge.upgrader.activeSlots;
      await refused(t.session.connect({ src: SRC, srcPort: 43020, dst: ROUTED, dstPort: 7100 }));
      expect(h!.edge.stats.nativeSynsRefused).toBe(1);
      expect([...h!.edge.table.flows()].some((f) => f.srcPort === 43020)).toBe(false);
      expect(h!.edge.upgrader.activeSlots).toBe(slots);
      await expect(t.session.connect({ src: SRC, srcPort: 43021, dst: ROUTED, dstPort: 7100 })).rejects.toThrow();
      expect(order.slice(15)).toEqual(['native 43020', 'decide 43021']);
      expect(h!.edge.stats.nativeSyns).toBe(6);
    } finally {
      t.close();
    }
  }, 60_000);

  it('the session limit holds: no native SYN beyond it', async () => {
    const order = await edge(new Set([ROUTED]), { maxFlowsPerSession: 3 });
    const t = await h!.tunnel({ tenant: 'acme', vnet: 'syn-limit' });
    const open: net.Socket[] = [];
    try {
      for (let i = 0; i < 3; i++) open.push(await t.session.connect({ src: SRC, srcPort: 43100 + i, dst: ROUTED, dstPort: 7100 }));
      await expect(t.session.connect({ src: SRC, srcPort: 43110, dst: ROUTED, dstPort: 7100 })).rejects.toThrow();
      expect(h!.edge.table.stats.refused['session-limit']).toBe(1);
      // Tickets only while the limit has room for them: the third flow went through JS.
      expect(h!.edge.stats.nativeSyns).toBe(1);
      expect(h!.edge.stats.nativeSynsRefused).toBe(0);
      expect(order).toEqual(['decide 43100', 'start 43100', 'native 43101', 'start 43101', 'decide 43102', 'start 43102']);
    } finally {
      for (const s of open) s.destroy();
      t.close();
    }
  }, 60_000);

  it('without fast close (the SYN-ACK would reach JS before the flow): none born', async () => {
    const order = await edge(new Set([ROUTED]), undefined, false);
    const t = await h!.tunnel({ tenant: 'acme', vnet: 'syn-slow-close' });
    try {
      for (let i = 0; i < 4; i++) await echo(await t.session.connect({ src: SRC, srcPort: 43300 + i, dst: ROUTED, dstPort: 7100 }));
      expect(h!.edge.stats.nativeSyns).toBe(0);
      expect(order.filter((e) => e.startsWith('decide'))).toHaveLength(4);
    } finally {
      t.close();
    }
  }, 60_000);

  it('OXY_IP_NATIVE_SYN=0: every SYN through decideFlow', async () => {
    process.env.OXY_IP_NATIVE_SYN = '0';
    const order = await edge(new Set([ROUTED]));
    const t = await h!.tunnel({ tenant: 'acme', vnet: 'syn-off' });
    try {
      for (let i = 0; i < 4; i++) await echo(await t.session.connect({ src: SRC, srcPort: 43200 + i, dst: ROUTED, dstPort: 7100 }));
      expect(h!.edge.stats.nativeSyns).toBe(0);
      expect(order.filter((e) => e.startsWith('decide'))).toHaveLength(4);
    } finally {
      t.close();
    }
  }, 60_000);
});
