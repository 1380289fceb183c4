import { afterEach, describe, expect, it } from 'vitest';

import { FlowTable, type Flow, type FlowEndReason } from '../../../src/engine/flow/index.js';
import { TcpFlag, buildTcp, buildUdp, flowKey, parseAddress, parsePacket, type PacketView } from '../../../src/engine/packet/index.js';

const A = parseAddress('198.18.1.1');
const B = parseAddress('198.18.2.2');

function udp(srcPort: number): PacketView {
  const view = parsePacket(buildUdp({ src: A, dst: B, srcPort, dstPort: 53 }));
  if (!view.ok) throw new Error('bad');
  return view;
}

describe('FlowTable', () => {
  const tables: FlowTable[] = [];
  afterEach(() => {
    for (const t of tables.splice(0)) t.close();
  });
  function table(options: ConstructorParameters<typeof FlowTable>[0] = {}) {
    const events: string[] = [];
    const t = new FlowTable({
      ...options,
      hooks: {
        onFlowStart: (f) => events.push(`start ${f.srcPort}`),
        onFlowEnd: (f, r) => events.push(`end ${f.srcPort} ${r}`),
      },
      release: (f: Flow, r: FlowEndReason) => events.push(`release ${f.srcPort} ${r}`),
    });
    tables.push(t);
    return { t, events };
  }

  function open(t: FlowTable, tenant: string, srcPort: number, vnet = ''): Flow | string {
    const scope = t.scope({ tenant, vnet });
    const refusal = t.admit(scope);
    if (refusal) return refusal;
    const view = udp(srcPort);
    const flow = t.create(scope, flowKey(view), view);
    flow.decision = { verdict: 'upgrade' };
    t.start(flow);
    return flow;
  }

  it('finds flows by scope and 5-tuple; identical tuples in two tenants or vnets are distinct', () => {
    const { t } = table();
    const a = open(t, 'a', 1000) as Flow;
    const b = open(t, 'b', 1000) as Flow;
    const c = open(t, 'a', 1000, 'other') as Flow;
    expect(new Set([a, b, c]).size).toBe(3);
    const key = flowKey(udp(1000));
    expect(t.lookup(t.scope({ tenant: 'a', vnet: '' }), key)).toBe(a);
    expect(t.lookup(t.scope({ tenant: 'b', vnet: '' }), key)).toBe(b);
    expect(t.lookup(t.scope({ tenant: 'a', vnet: 'other' }), key)).toBe(c);
    expect(t.stats.active).toBe(3);
    expect(t.tenantStats('a').flows).toBe(2);
  });

  it('applies the global and per-tenant limits with counters', () => {
    const { t } = table({ limits: { maxFlows: 3, maxFlowsPerTenant: 2 } });
    expect(open(t, 'a', 1)).not.toBeTypeOf('string');
    expect(open(t, 'a', 2)).not.toBeTypeOf('string');
    expect(open(t, 'a', 3)).toBe('tenant-limit');
    expect(open(t, 'b', 1)).not.toBeTypeOf('string');
    expect(open(t, 'c', 1)).toBe('global-limit');
    expect(t.stats.refused).toMatchObject({ 'tenant-limit': 1, 'global-limit': 1 });
    expect(t.tenantStats('a')).toEqual({ flows: 2, refused: 1 });
  });

  it('reports start and end from one place, release before onFlowEnd, end is idempotent', () => {
    const { t, events } = table();
    const flow = open(t, 'a', 7) as Flow;
    t.end(flow, 'closed');
    t.end(flow, 'idle');
    expect(events).toEqual(['start 7', 'release 7 closed', 'end 7 closed']);
    expect(t.stats.endedBy.closed).toBe(1);
    expect(t.stats.active).toBe(0);
  });

  it('evicts idle flows on sweep, per protocol timeout', () => {
    const { t, events } = table({ timeouts: { udpIdleMs: 1000 } });
    const flow = open(t, 'a', 9) as Flow;
    expect(t.sweep(flow.lastSeen + 999)).toBe(0);
    expect(t.sweep(flow.lastSeen + 1000)).toBe(1);
    expect(events.at(-1)).toBe('end 9 idle');
  });

  it('TCP: RST ends at once, both FINs end after the linger', () => {
    const { t } = table({ timeouts: { tcpCloseLingerMs: 500 } });
    const scope = t.scope({ tenant: 'a', vnet: '' });
    const syn = parsePacket(buildTcp({ src: A, dst: B, srcPort: 1, dstPort: 80, seq: 1, flags: TcpFlag.SYN })) as PacketView;
    const flow = t.create(scope, flowKey(syn), syn);
    t.start(flow);
    expect(flow.tcpFlags(TcpFlag.FIN | TcpFlag.ACK, true, 100)).toBe(false);
    expect(flow.closingSince).toBe(0);
    expect(flow.tcpFlags(TcpFlag.FIN | TcpFlag.ACK, false, 200)).toBe(false);
    expect(flow.closingSince).toBe(200);
    expect(t.sweep(600)).toBe(0);
    expect(t.sweep(700)).toBe(1);
    expect(flow.endReason).toBe('fin');
  });

  it('TCP: after both FINs a bare RST (a closed socket answering a stray retransmission) does not make the close an abort; RST+ACK does', () => {
    const { t } = table({ timeouts: { tcpCloseLingerMs: 500 } });
    const scope = t.scope({ tenant: 'a', vnet: '' });
    const open = (port: number) => {
      const syn = parsePacket(buildTcp({ src: A, dst: B, srcPort: port, dstPort: 80, seq: 1, flags: TcpFlag.SYN })) as PacketView;
      const flow = t.create(scope, flowKey(syn), syn);
      t.start(flow);
      return flow;
    };
    const early = open(1);
    expect(early.tcpFlags(TcpFlag.RST, false, 50)).toBe(true); // before the close: an abort
    const closed = open(2);
    closed.tcpFlags(TcpFlag.FIN | TcpFlag.ACK, true, 100);
    closed.tcpFlags(TcpFlag.FIN | TcpFlag.ACK, false, 200);
    expect(closed.tcpFlags(TcpFlag.RST, false, 250)).toBe(false);
    expect(closed.tcpFlags(TcpFlag.RST | TcpFlag.ACK, true, 260)).toBe(true);
    const lingering = open(3);
    lingering.tcpFlags(TcpFlag.FIN | TcpFlag.ACK, true, 100);
    lingering.tcpFlags(TcpFlag.FIN | TcpFlag.ACK, false, 200);
    lingering.tcpFlags(TcpFlag.RST, false, 250);
    t.sweep(700);
    expect(lingering.endReason).toBe('fin');
  });

  it('close() ends every flow with shutdown', () => {
    const { t, events } = table();
    open(t, 'a', 1);
    open(t, 'b', 2);
    t.close();
    expect(events.filter((e) => e.startsWith('end'))).toEqual(['end 1 shutdown', 'end 2 shutdown']);
  });
});

describe('FlowTable handshake timeout', () => {
  it('ends TCP flows that never got established after tcpHandshakeMs, not established ones', () => {
    const t = new FlowTable({ timeouts: { tcpHandshakeMs: 100, tcpIdleMs: 10_000 } });
    try {
      const scope = t.scope({ tenant: 'a', vnet: '' });
      const A = parseAddress('198.18.1.1');
      const B = parseAddress('198.18.2.2');
      const make = (port: number, established: boolean) => {
        const syn = parsePacket(buildTcp({ src: A, dst: B, srcPort: port, dstPort: 80, seq: 1, flags: TcpFlag.SYN })) as PacketView;
        const flow = t.create(scope, flowKey(syn), syn);
        flow.established = established;
        t.start(flow);
        return flow;
      };
      const halfOpen = make(1, false);
      const open = make(2, true);
      t.sweep(halfOpen.startedAt + 100);
      expect(halfOpen.endReason).toBe('idle');
      expect(open.ended).toBe(false);
    } finally {
      t.close();
    }
  });
});
