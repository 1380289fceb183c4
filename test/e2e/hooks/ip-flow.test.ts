import type net from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { createHarness, type Harness } from '../ip/harness.js';
import { logSink } from './support.js';
import { IpEdge } from '../../../src/engine/edge/ip/index.js';
import { TcpDowngrader } from '../../../src/engine/netns/index.js';
import { Egress, HOOK_ORDER, HookRunner, HookTrace, attachPacketHook, validateHooks, withIpHooks, type FlowContexts, type IpOffRamp } from '../../../src/engine/hooks/index.js';
// @ts-expect-error plain JS example
import { sshHooks } from '../../../examples/ssh-sessions.js';

// IP-flow hooks driven on the IP edge directly (as test/e2e/ip/ does): plain TCP clients →
// downgrader → SEQPACKET → edge (hooks) → upgrade. Addresses: 198.18.0.0/15, inside namespaces.

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
  let closes: { reason: string; packetsIn?: number }[] = [];

  beforeAll(async () => {
    const runner = new HookRunner(
      validateHooks('test', {
        ipFlow: {
          handleFlow: (flow: { dst: { port: number } }) => (flow.dst.port === 23 ? { action: 'drop', reset: true } : flow.dst.port === 25 ? { action: 'drop' } : undefined),
          handlePacket: () => void packets++,
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
      expect(entry.hooks).toEqual(HOOK_ORDER['ip-flow'].filter((n) => ['ipFlow.handleFlow', 'ipFlow.handlePacket', 'ingress.handleConnectionClose'].includes(n)));
      expect(packets).toBeGreaterThanOrEqual(3);
    } finally {
      t.close();
    }
  });
});

privilegedDescribe('examples/ssh-sessions.js: port 22 upgraded, observed, downgraded toward its destination', () => {
  let h: Harness;
  let destination: IpEdge;
  let downgrader: TcpDowngrader | undefined;
  const logs = logSink();
  const trace = new HookTrace();

  beforeAll(async () => {
    // The destination network: another IP edge whose defaults echo TCP (an "SSH server" that echoes).
    destination = await IpEdge.create();
    let toEdge: (packet: Buffer) => void = () => undefined;
    const session = destination.openSession({ tenant: 'dst', vnet: '' }, (packet) => toEdge(packet));
    const offRamp: IpOffRamp = { send: (packet) => session.receive(packet), onPacket: (receive) => (toEdge = receive) };
    const runner = new HookRunner(validateHooks('ssh', sshHooks({ offRamp, log: logs.log })), { log: logs.log, trace });
    const flows: FlowContexts = new WeakMap();
    let edgeNs: IpEdge['ns'] | undefined;
    const egress = new Egress({ runner, downgrader: async () => (downgrader ??= await TcpDowngrader.create({ ns: edgeNs, timeouts: { tcpCloseLingerMs: 200 } })) });
    h = await createHarness(withIpHooks(runner, { timeouts: { tcpCloseLingerMs: 200 } }, egress, flows));
    edgeNs = h.edge.ns;
  });
  afterAll(() => {
    h?.close();
    downgrader?.close();
    destination?.close();
  });

  it('carries the session to the destination as IP packets and logs it', async () => {
    const t = await h.tunnel({ tenant: 'acme', vnet: '' });
    try {
      const socket = await t.session.connect({ src: '198.18.1.1', srcPort: 42022, dst: '198.18.3.3', dstPort: 22 });
      let got = '';
      socket.on('data', (d: Buffer) => (got += d));
      socket.write('SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n');
      await expect.poll(() => got, { timeout: 5000 }).toBe('SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n');
      for (const key of 'ls\n') socket.write(key);
      await expect.poll(() => got, { timeout: 5000 }).toBe('SSH-2.0-OpenSSH_9.2p1 Debian-2\r\nls\n');
      socket.end();
      await expect.poll(() => logs.text(), { timeout: 10_000 }).toMatch(/SSH session ended flow=198\.18\.1\.1:42022 to=198\.18\.3\.3:22 client="SSH-2\.0-OpenSSH_9\.2p1 Debian-2" server="SSH-2\.0-OpenSSH_9\.2p1 Debian-2" bytesIn=\d+ bytesOut=\d+ keystrokes=[1-3] reason=fin/);
      expect(logs.text()).toMatch(/SSH client identification flow=198\.18\.1\.1:42022 client="SSH-2\.0-OpenSSH_9\.2p1 Debian-2"/);
      // The destination edge saw the flow with the client's tuple: downgraded, not proxied from the edge's address.
      expect([...destination.table.flows()].length + destination.stats.packetsIn).toBeGreaterThan(0);
      const entry = await trace.waitFor();
      expect(entry.hooks).toEqual(HOOK_ORDER['ip-flow'].filter((n) => entry.hooks.includes(n)));
      expect(entry.hooks).toContain('egress.handleConnection');
      expect(entry.hooks).toContain('tunnel.appTunnelPipeline');
    } finally {
      t.close();
    }
  }, 30_000);
});
