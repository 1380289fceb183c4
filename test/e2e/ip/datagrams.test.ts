import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { privilegedDescribe } from '../../helpers/privileged.js';
import { IpEdge, SeqpacketOnRamp, GueOnRamp, GueClient, deriveGueKeys, type GueCredential } from '../../../src/engine/edge/ip/index.js';
import { SeqpacketSocket } from '../../../src/engine/native/index.js';
import {
  TcpFlag,
  buildIcmpEcho,
  buildTcp,
  buildUdp,
  parseAddress,
  parsePacket,
  formatAddress,
  verifyTransportChecksum,
  type PacketView,
} from '../../../src/engine/packet/index.js';
import type { Flow, FlowEndReason } from '../../../src/engine/flow/index.js';

/** Two GUE senders' keys (device IDs and secrets as `warp enroll` makes them), each of its own tenant. */
const GUE_DEVICES: Record<string, { secret: Buffer; tenant: string }> = {
  '0e6f1f3c-6b7a-4b43-9d7e-5d1c2a3b4c5d': { secret: randomBytes(32), tenant: 'gue-tenant' },
  '7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d': { secret: randomBytes(32), tenant: 'quiet-tenant' },
};
const gueCredentials = (keyId: string): GueCredential | undefined => {
  const d = GUE_DEVICES[keyId];
  return d && { keys: deriveGueKeys(d.secret), tenant: d.tenant };
};
const gueClient = (tenant: string) => {
  const [deviceId, d] = Object.entries(GUE_DEVICES).find(([, v]) => v.tenant === tenant)!;
  return new GueClient({ deviceId, secret: d.secret });
};

const A = parseAddress('198.18.1.1');
const B = parseAddress('198.18.2.2');
const A6 = parseAddress('2001:db8:1::1');
const B6 = parseAddress('2001:db8:2::2');

/** A raw connected IP tunnel: send packets, await replies. */
function rawTunnel(path: string, context: object) {
  const socket = SeqpacketSocket.connect(path);
  socket.send(Buffer.from(JSON.stringify(context)));
  const queue: Buffer[] = [];
  const waiters: ((b: Buffer) => void)[] = [];
  socket.on('message', (data) => {
    const copy = Buffer.from(data);
    const w = waiters.shift();
    if (w) w(copy);
    else queue.push(copy);
  });
  socket.on('error', () => {});
  return {
    socket,
    send: (packet: Buffer) => socket.send(packet),
    next(timeoutMs = 3000): Promise<Buffer> {
      const queued = queue.shift();
      if (queued) return Promise.resolve(queued);
      return new Promise((resolve, reject) => {
        const waiter = (b: Buffer): void => {
          clearTimeout(timer);
          resolve(b);
        };
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(waiter), 1);
          reject(new Error('no reply'));
        }, timeoutMs);
        waiters.push(waiter);
      });
    },
    close: () => socket.close(),
  };
}

function parsed(packet: Buffer): PacketView {
  const view = parsePacket(packet);
  if (!view.ok) throw new Error(`malformed reply: ${view.reason}`);
  return view;
}

privilegedDescribe('UDP, ICMP and GUE through the IP edge', () => {
  let edge: IpEdge;
  let onRamp: SeqpacketOnRamp;
  let gue: GueOnRamp;
  const path = `\0oxy-ip-dgram-${process.pid}-${randomBytes(4).toString('hex')}`;
  const ended: [Flow, FlowEndReason][] = [];
  const udpTenants: string[] = [];

  beforeAll(async () => {
    edge = await IpEdge.create({
      timeouts: { udpIdleMs: 300, otherIdleMs: 300 },
      limits: { maxFlowsPerTenant: 3 },
      onFlowEnd: (flow, reason) => ended.push([flow, reason]),
      onUdpFlow(udp) {
        udpTenants.push(udp.flow.tenant);
        udp.onDatagram = (payload) => {
          if (udp.flow.dstPort === 53) {
            // DNS-like: same id, QR bit set, the question echoed, one fixed answer.
            const answer = Buffer.concat([payload.subarray(0, 2), Buffer.from([0x81, 0x80]), payload.subarray(4), Buffer.from('198.18.9.9')]);
            udp.send(answer);
          } else {
            udp.send(payload);
          }
        };
      },
    });
    onRamp = new SeqpacketOnRamp(edge, path);
    gue = await GueOnRamp.listen(edge, { port: 0, host: '127.0.0.1', credentials: gueCredentials });
  });
  afterAll(() => {
    gue?.close();
    onRamp?.close();
    edge?.close();
  });

  it('answers a DNS-like UDP request (IPv4), addresses and ports swapped, checksum valid', async () => {
    const t = rawTunnel(path, { tenant: 'dns', vnet: 'v1', device: 'laptop-1' });
    try {
      const query = Buffer.concat([Buffer.from([0x12, 0x34, 0x01, 0x00]), Buffer.from('example.test')]);
      t.send(buildUdp({ src: A, dst: B, srcPort: 5353, dstPort: 53, payload: query }));
      const reply = parsed(await t.next());
      expect(formatAddress(reply.src)).toBe('198.18.2.2');
      expect(formatAddress(reply.dst)).toBe('198.18.1.1');
      expect([reply.srcPort, reply.dstPort]).toEqual([53, 5353]);
      expect(verifyTransportChecksum(reply)).toBe(true);
      expect(reply.payload.readUInt16BE(0)).toBe(0x1234);
      expect(reply.payload.subarray(4).toString()).toBe('example.test198.18.9.9');
    } finally {
      t.close();
    }
  });

  it('echoes UDP over IPv6', async () => {
    const t = rawTunnel(path, { tenant: 'v6', vnet: '' });
    try {
      t.send(buildUdp({ src: A6, dst: B6, srcPort: 1000, dstPort: 7, payload: Buffer.from('six') }));
      const reply = parsed(await t.next());
      expect(reply.version).toBe(6);
      expect(formatAddress(reply.src)).toBe('2001:db8:2::2');
      expect(reply.payload.toString()).toBe('six');
      expect(verifyTransportChecksum(reply)).toBe(true);
    } finally {
      t.close();
    }
  });

  it('answers ICMP and ICMPv6 echo in user space', async () => {
    const t = rawTunnel(path, { tenant: 'ping', vnet: '' });
    try {
      t.send(buildIcmpEcho({ src: A, dst: B, id: 77, seq: 1, payload: Buffer.from('ping!') }));
      const reply = parsed(await t.next());
      expect([reply.icmpType, reply.echoId, reply.echoSeq]).toEqual([0, 77, 1]);
      expect(reply.payload.toString()).toBe('ping!');
      expect(verifyTransportChecksum(reply)).toBe(true);
      t.send(buildIcmpEcho({ src: A6, dst: B6, id: 78, seq: 2, payload: Buffer.from('ping6') }));
      const reply6 = parsed(await t.next());
      expect([reply6.icmpType, reply6.echoId, reply6.echoSeq]).toEqual([129, 78, 2]);
      expect(verifyTransportChecksum(reply6)).toBe(true);
    } finally {
      t.close();
    }
  });

  it('evicts idle UDP flows and reports them', async () => {
    const t = rawTunnel(path, { tenant: 'idle', vnet: '' });
    try {
      t.send(buildUdp({ src: A, dst: B, srcPort: 2000, dstPort: 9, payload: Buffer.from('x') }));
      await t.next();
      const flow = [...edge.table.flows()].find((f) => f.tenant === 'idle')!;
      expect(flow).toBeDefined();
      await expect.poll(() => ended.find(([f]) => f === flow)?.[1], { timeout: 3000 }).toBe('idle');
      expect(flow.packetsIn).toBe(1);
      expect(flow.packetsOut).toBe(1);
    } finally {
      t.close();
    }
  });

  it('refuses flows beyond the per-tenant limit, with a counter; other tenants unaffected', async () => {
    const t = rawTunnel(path, { tenant: 'limited', vnet: '' });
    const other = rawTunnel(path, { tenant: 'other', vnet: '' });
    try {
      for (let i = 0; i < 3; i++) {
        t.send(buildUdp({ src: A, dst: B, srcPort: 3000 + i, dstPort: 9, payload: Buffer.from([i]) }));
        await t.next();
      }
      const before = edge.table.stats.refused['tenant-limit'];
      t.send(buildUdp({ src: A, dst: B, srcPort: 3999, dstPort: 9, payload: Buffer.from('no') }));
      await expect.poll(() => edge.table.stats.refused['tenant-limit'], { interval: 5 }).toBe(before + 1);
      expect(edge.table.tenantStats('limited')).toMatchObject({ flows: 3, refused: 1 });
      await expect(t.next(30)).rejects.toThrow('no reply');
      // An existing flow of the tenant still works, and so does another tenant.
      t.send(buildUdp({ src: A, dst: B, srcPort: 3000, dstPort: 9, payload: Buffer.from('still') }));
      expect(parsed(await t.next()).payload.toString()).toBe('still');
      other.send(buildUdp({ src: A, dst: B, srcPort: 3999, dstPort: 9, payload: Buffer.from('fine') }));
      expect(parsed(await other.next()).payload.toString()).toBe('fine');
    } finally {
      t.close();
      other.close();
    }
  });

  it('ends a session’s flows when its connection closes; bad contexts are refused', async () => {
    const t = rawTunnel(path, { tenant: 'bye', vnet: '' });
    t.send(buildUdp({ src: A, dst: B, srcPort: 4000, dstPort: 9, payload: Buffer.from('x') }));
    await t.next();
    t.close();
    await expect.poll(() => ended.find(([f]) => f.tenant === 'bye')?.[1], { timeout: 3000 }).toBe('session-closed');
    const bad = SeqpacketSocket.connect(path);
    bad.on('error', () => {});
    const closed = new Promise<void>((r) => bad.once('close', () => r()));
    bad.send(Buffer.from('{"vnet": "no tenant"}'));
    await closed;
    expect(onRamp.stats.badContext).toBeGreaterThanOrEqual(1);
  });

  it('GUE on-ramp: context in private data, authenticated replies encapsulated back with it', async () => {
    const client = dgram.createSocket('udp4');
    await new Promise<void>((r) => client.bind(0, '127.0.0.1', r));
    const sender = gueClient('gue-tenant');
    const replies: Buffer[] = [];
    client.on('message', (m) => replies.push(m));
    try {
      const udp = (n: number) => buildUdp({ src: A, dst: B, srcPort: 6000, dstPort: 9, payload: Buffer.from(`via gue ${n}`) });
      client.send(sender.encapsulate(udp(0), { tenant: 'gue-tenant', vnet: 'gue-vnet' }), gue.port, '127.0.0.1');
      await expect.poll(() => replies.length).toBe(1);
      const inner = parsed(sender.decapsulate(replies[0]!)!);
      expect(inner.payload.toString()).toBe('via gue 0');
      // A reply opens once; reflected back at the edge it does not verify (a key per direction).
      expect(sender.decapsulate(Buffer.from(replies[0]!))).toBeUndefined();
      client.send(replies[0]!, gue.port, '127.0.0.1');
      await expect.poll(() => gue.stats.dropped['bad-mac']).toBe(1);
      expect(udpTenants).toContain('gue-tenant');
      const flow = [...edge.table.flows()].find((f) => f.tenant === 'gue-tenant')!;
      expect(flow.vnet).toBe('gue-vnet');
      expect(flow.scope.context.peer).toMatch(/^127\.0\.0\.1:\d+$/);
      // Reordered datagrams are served (the replay window), a second copy is not.
      const [d1, d2, d3] = [1, 2, 3].map((n) => sender.encapsulate(udp(n), { vnet: 'gue-vnet' }));
      for (const d of [d3, d1, d2, d2]) client.send(d!, gue.port, '127.0.0.1');
      await expect.poll(() => replies.length).toBe(4);
      await expect.poll(() => gue.stats.dropped.replayed).toBe(1);
      expect(replies.slice(1).map((r) => parsed(sender.decapsulate(r)!).payload.toString())).toEqual(['via gue 3', 'via gue 1', 'via gue 2']);
      // Not GUE variant 0 / no context / another tenant than the key's: counted and dropped.
      const before = { ...gue.stats.dropped };
      client.send(Buffer.from([0x40, 4, 0, 0, 1, 2, 3]), gue.port, '127.0.0.1');
      client.send(Buffer.concat([Buffer.from([1, 4, 0, 0, 0, 0, 0, 0]), buildUdp({ src: A, dst: B, srcPort: 1, dstPort: 9 })]), gue.port, '127.0.0.1');
      client.send(sender.encapsulate(udp(4), { tenant: 'quiet-tenant' }), gue.port, '127.0.0.1');
      await expect.poll(() => gue.stats.dropped.malformed).toBe(before.malformed + 1);
      await expect.poll(() => gue.stats.dropped['bad-context']).toBe(before['bad-context'] + 1);
      await expect.poll(() => gue.stats.dropped['wrong-tenant']).toBe(before['wrong-tenant'] + 1);
      expect(replies).toHaveLength(4);
    } finally {
      client.close();
    }
  });

  it('GUE on-ramp: a sender that went quiet has its session closed (idleMs)', async () => {
    const quiet = await GueOnRamp.listen(edge, { port: 0, host: '127.0.0.1', idleMs: 200, credentials: gueCredentials });
    const client = dgram.createSocket('udp4');
    await new Promise<void>((r) => client.bind(0, '127.0.0.1', r));
    try {
      const reply = new Promise<Buffer>((resolve) => client.once('message', resolve));
      const packet = buildUdp({ src: A, dst: B, srcPort: 6001, dstPort: 9, payload: Buffer.from('once') });
      client.send(gueClient('quiet-tenant').encapsulate(packet), quiet.port, '127.0.0.1');
      await reply;
      expect(quiet.stats.sessions).toBe(1);
      await expect.poll(() => quiet.stats.idleClosed, { timeout: 3000 }).toBe(1);
      expect(quiet.stats.sessions).toBe(0);
      expect([...edge.table.flows()].some((f) => f.tenant === 'quiet-tenant')).toBe(false);
    } finally {
      client.close();
      quiet.close();
    }
  });
});

privilegedDescribe('ICMP and TCP handed to a pluggable IP off-ramp (forward verdict)', () => {
  let edge: IpEdge;
  let onRamp: SeqpacketOnRamp;
  const path = `\0oxy-ip-fwd-${process.pid}-${randomBytes(4).toString('hex')}`;
  const offRamped: string[] = [];

  beforeAll(async () => {
    edge = await IpEdge.create({
      decideFlow(flow, packet) {
        if (flow.dstPort === 666) throw new Error('application bug');
        return packet.protocolName === 'icmp' || flow.dstPort === 22 ? { verdict: 'forward', route: 'tunnel-7' } : 'reject';
      },
      onIpPacket(flow, packet) {
        offRamped.push(`${flow.decision.route} ${parsed(packet).protocolName}`);
        const view = parsed(packet);
        if (view.protocolName === 'icmp') {
          // The off-ramp answers the ping itself (as a remote host would).
          edge.sendToClient(
            flow,
            buildIcmpEcho({ src: flow.dst, dst: flow.src, id: view.echoId, seq: view.echoSeq, reply: true, payload: Buffer.from('from off-ramp') }),
          );
        }
      },
    });
    onRamp = new SeqpacketOnRamp(edge, path);
  });
  afterAll(() => {
    onRamp?.close();
    edge?.close();
  });

  it('forwards ICMP echo and TCP to port 22 as IP packets; rejects the rest with RST', async () => {
    const t = rawTunnel(path, { tenant: 'fwd', vnet: '' });
    try {
      t.send(buildIcmpEcho({ src: A, dst: B, id: 5, seq: 9, payload: Buffer.from('hi') }));
      const reply = parsed(await t.next());
      expect(reply.payload.toString()).toBe('from off-ramp');
      t.send(buildTcp({ src: A, dst: B, srcPort: 5555, dstPort: 22, seq: 1, flags: TcpFlag.SYN }));
      await expect.poll(() => offRamped).toEqual(['tunnel-7 icmp', 'tunnel-7 tcp']);
      t.send(buildTcp({ src: A, dst: B, srcPort: 5556, dstPort: 80, seq: 100, flags: TcpFlag.SYN }));
      const rst = parsed(await t.next());
      expect(rst.tcpFlags & TcpFlag.RST).toBeTruthy();
      expect(rst.tcpAck).toBe(101);
      expect(edge.stats.dropped['verdict-reject']).toBe(1);
      // A throwing decideFlow drops the packet (counted); the tunnel keeps working.
      t.send(buildUdp({ src: A, dst: B, srcPort: 1, dstPort: 666 }));
      await expect.poll(() => edge.stats.dropped['decide-error']).toBe(1);
      t.send(buildIcmpEcho({ src: A, dst: B, id: 6, seq: 1 }));
      expect(parsed(await t.next()).payload.toString()).toBe('from off-ramp');
    } finally {
      t.close();
    }
  });
});
