import type net from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { createHarness, type Harness } from '../ip/harness.js';
import { logSink } from './support.js';
import { IpEdge } from '../../../src/engine/edge/ip/index.js';
import { buildUdp, fragmentPacket, parseAddress, parsePacket } from '../../../src/engine/packet/index.js';
import { HOOK_ORDER, HookRunner, HookTrace, validateHooks } from '../../../src/engine/hooks/index.js';
import { attachPacketHook, withIpHooks, type FlowContexts } from '../../../src/engine/edge/pipeline/index.js';

// IP-flow hooks driven on the IP edge directly (as test/e2e/ip/ does): plain TCP clients →
// downgrader → SEQPACKET → edge (hooks) → upgrade. Addresses: 198.18.0.0/15, inside namespaces.
// examples/ssh-sessions.js (upgrade, terminate SSH, downgrade) has its own file: ssh-sessions.test.ts.

function readAll(socket: net.Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    socket.on('data', (c: Buffer) => (text += c));
    socket.once('end', () => resolve(text));
    socket.once('error', reject);
  });
}

privilegedDescribe('ipFlow.handleFlow and handlePacket on the IP edge', () => {
  let h: Harness;
  const trace = new HookTrace();
  const logs = logSink();
  let packets = 0;
  const packetSizes: number[] = [];
  let closes: { reason: string; packetsIn?: number }[] = [];

  beforeAll(async () => {
    const runner = new HookRunner(
      validateHooks('test', {
        ipFlow: {
          handleFlow: (flow: { dst: { port: number } }) =>
            flow.dst.port === 23 ? { action: 'drop', reset: true } : flow.dst.port === 25 ? { action: 'drop' } : undefined,
          handlePacket: (packet: Buffer) => {
            packets++;
            packetSizes.push(packet.length);
          },
        },
        ingress: { handleConnectionClose: (stats: { reason: string; packetsIn?: number }) => void closes.push(stats) },
      }),
      { log: logs.log, trace },
    );
    const flows: FlowContexts = new WeakMap();
    h = await createHarness(withIpHooks(runner, { timeouts: { tcpCloseLingerMs: 200 } }, undefined, flows));
    attachPacketHook(h.edge as IpEdge<unknown>, runner, flows);
  });
  afterAll(() => h?.close());

  it('a flow dropped by handleFlow (reset): the client is refused, nothing is upgraded', async () => {
    const t = await h.tunnel({ tenant: 'acme', vnet: '' });
    try {
      trace.clear();
      closes = [];
      await expect(t.session.connect({ src: '198.18.1.1', srcPort: 41023, dst: '198.18.2.2', dstPort: 23, timeoutMs: 3000 })).rejects.toThrow();
      expect((await trace.waitFor()).hooks).toEqual(['ipFlow.handleFlow', 'ingress.handleConnectionClose']);
      expect(closes[0].reason).toBe('dropped');
      expect(h.edge.stats.dropped['verdict-reject']).toBeGreaterThanOrEqual(1);
    } finally {
      t.close();
    }
  });

  it('a flow dropped silently: the SYN goes nowhere', async () => {
    const t = await h.tunnel({ tenant: 'acme', vnet: '' });
    try {
      await expect(t.session.connect({ src: '198.18.1.1', srcPort: 41025, dst: '198.18.2.2', dstPort: 25, timeoutMs: 1500 })).rejects.toThrow();
      expect(h.edge.stats.dropped['verdict-drop']).toBeGreaterThanOrEqual(1);
    } finally {
      t.close();
    }
  });

  it('other flows keep the default (upgrade, echo); handlePacket sees their later packets; the order is documented', async () => {
    const t = await h.tunnel({ tenant: 'acme', vnet: '' });
    try {
      trace.clear();
      packets = 0;
      const socket = await t.session.connect({ src: '198.18.1.1', srcPort: 41007, dst: '198.18.2.2', dstPort: 7 });
      const done = readAll(socket);
      socket.end('echo me');
      expect(await done).toBe('echo me');
      const entry = await trace.waitFor(undefined, 15_000);
      expect(entry.hooks).toEqual(
        HOOK_ORDER['ip-flow'].filter((n) => ['ipFlow.handleFlow', 'ipFlow.handlePacket', 'ingress.handleConnectionClose'].includes(n)),
      );
      expect(packets).toBeGreaterThanOrEqual(3);
    } finally {
      t.close();
    }
  });

  it('a datagram that arrives in fragments meets handlePacket whole, once, like any later packet of its flow', () => {
    const replies: Buffer[] = [];
    const session = h.edge.openSession({ tenant: 'acme', vnet: '' }, (packet) => replies.push(Buffer.from(packet)));
    try {
      const datagram = (payload: Buffer) =>
        buildUdp({
          src: parseAddress('198.18.1.1'),
          dst: parseAddress('198.18.2.2'),
          srcPort: 41008,
          dstPort: 7,
          payload,
          dontFragment: false,
          identification: 9,
        });
      session.receive(datagram(Buffer.from('first'))); // handleFlow decides the flow on this one
      packetSizes.length = 0;
      const big = datagram(Buffer.alloc(3000, 1));
      for (const piece of fragmentPacket(big, 1280, 9)) session.receive(piece);
      expect(packetSizes).toEqual([big.length]);
      expect(
        replies.map((r) => {
          const v = parsePacket(r);
          return v.ok ? v.payloadLength : -1;
        }),
      ).toEqual([5, 3000]);
    } finally {
      session.close();
    }
  });
});
