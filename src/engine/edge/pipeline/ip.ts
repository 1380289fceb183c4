/**
 * The IP-flow hooks on the IP edge. `withIpHooks(runner, options, egress)` wraps the
 * options an IpEdge is created with (the edge's own routing, or the echo defaults):
 *
 * - new flow: `newCtx` → `ipFlow.handleFlow` (sync): drop / reject (reset) / pass as IP
 *   (`forward`) / upgrade / redirect; upgrade and redirect then go through the wrapped
 *   `decideFlow` (routing) unless egress hooks will decide;
 * - later packets of a flow: `ipFlow.handlePacket` (attachPacketHook: wraps the edge's
 *   receive path, installed only when the hook is implemented);
 * - upgraded TCP: `ingress.handleConnection`, then egress through the shared pipeline
 *   when the app implements egress or tunnel hooks (downgrade to an IP off-ramp included),
 *   else the wrapped `onTcpStream`;
 * - flow end: `ingress.handleConnectionClose` with the flow's counters.
 *
 * With none of these hooks implemented the options come back unchanged: no cost.
 */
import type net from 'node:net';
import type { Flow } from '../../flow/flow.js';
import type { FlowDecision, FlowVerdict } from '../../flow/types.js';
import type { IpEdge, IpEdgeOptions } from '../ip/edge.js';
import type { IpSession, UdpFlow } from '../ip/edge.js';
import { bridgeUdp } from '../ip/udp-bridge.js';
import { PacketView, flowKey, formatAddress, parsePacket } from '../../packet/index.js';
import type { Egress } from './egress.js';
import { runTunnel } from './intercept.js';
import type { HookConnection, HookRunner } from '../../hooks/runner.js';
import type { FlowAction, HookContext, SocketAddress } from '../../hooks/types.js';

interface FlowHookState {
  conn: HookConnection;
  redirect?: SocketAddress;
}

/** The hook state of each live flow. */
export type FlowContexts = WeakMap<Flow<unknown>, FlowHookState>;

/** Whether any hook that concerns IP flows is implemented. */
export function hasIpHooks(r: HookRunner): boolean {
  return Boolean(r.handleFlow || r.handlePacket || r.ingressConnection || r.ingressClose || r.udpConnect || egressHooked(r));
}

const egressHooked = (r: HookRunner) =>
  Boolean(r.egressConnection || r.upstreamIps || r.tcpConnect || r.established || r.shouldInterceptHttps || r.appTunnelPipeline);

export function withIpHooks<R>(runner: HookRunner, base: IpEdgeOptions<R>, egress?: Egress, flows: FlowContexts = new WeakMap()): IpEdgeOptions<R> {
  if (!hasIpHooks(runner)) return base;
  const r = runner;
  const baseDecide = base.decideFlow;
  const baseTcp = base.onTcpStream;
  const viaEgress = egress !== undefined && egressHooked(r);
  // UDP flows go through the egress pipeline too once the app implements an egress hook for them.
  const udpViaEgress = egress !== undefined && (egressHooked(r) || Boolean(r.udpConnect));

  const decideFlow = (flow: Flow<R>, packet: PacketView): FlowDecision<R> | FlowVerdict => {
    // A stream the hooks already had, downgraded back into the edge's network: route it.
    if (flow.scope.context.reentry) return baseDecide ? baseDecide(flow, packet) : 'upgrade';
    const src = { address: formatAddress(flow.src), port: flow.srcPort };
    const dst = { address: formatAddress(flow.dst), port: flow.dstPort };
    let conn: HookConnection | undefined;
    let action: FlowAction | undefined;
    try {
      conn = r.connection('ip-flow', src, dst);
      conn.tenant = flow.tenant;
      const vnet = { id: flow.vnet, name: flow.scope.context.vnetName ?? flow.vnet };
      conn.vnet = flow.vnet ? vnet : undefined;
      if (r.handleFlow) {
        const info = { version: flow.version, protocol: flow.protocol, src, dst, tenant: flow.tenant, vnet };
        action = r.call(conn, 'ipFlow.handleFlow', r.handleFlow, info, packet.buf.subarray(0, packet.length), conn as HookContext<unknown>) || undefined;
      }
    } catch (err) {
      if (conn) {
        r.failed(conn, err, 'IP flow failed');
        r.close(conn, { bytesIn: 0, bytesOut: 0, durationMs: 0, reason: 'error' });
      } else r.log.error({ err }, 'Hook failed; dropping the flow');
      return 'drop';
    }
    if (action?.action === 'drop') {
      r.close(conn, { bytesIn: packet.length, bytesOut: 0, packetsIn: 1, packetsOut: 0, durationMs: 0, reason: 'dropped' });
      return action.reset ? 'reject' : 'drop';
    }
    flows.set(flow as Flow<unknown>, { conn, redirect: action?.action === 'redirect' ? action.to : undefined });
    if (action?.action === 'pass') return 'forward';
    // upgrade / redirect / no opinion: the edge's routing decides, unless the egress hooks will
    // (then a flow without a route meets them too, instead of an ICMP unreachable).
    const hooked = flow.protocol === 6 ? viaEgress : flow.protocol === 17 && udpViaEgress;
    if (hooked || ((flow.protocol === 6 || flow.protocol === 17) && action?.action === 'redirect')) return 'upgrade';
    return baseDecide ? baseDecide(flow, packet) : 'upgrade';
  };

  const onTcpStream = (socket: net.Socket, flow: Flow<R>): void => {
    const state = flows.get(flow as Flow<unknown>);
    if (!state) return baseTcp ? baseTcp(socket, flow) : void socket.pipe(socket);
    const { conn } = state;
    const ctx = conn as HookContext<unknown>;
    socket.pause();
    void (async () => {
      try {
        if (r.ingressConnection && (await r.call(conn, 'ingress.handleConnection', r.ingressConnection, ctx))?.action === 'block') {
          socket.resetAndDestroy();
          return;
        }
        if (!viaEgress && !state.redirect) {
          socket.resume();
          return baseTcp ? baseTcp(socket, flow) : void socket.pipe(socket);
        }
        const target = state.redirect ?? conn.local;
        const { socket: upstream, info } = await egress!.connectTcp(conn, target.address, target.port, conn.client);
        await runTunnel(r, conn, socket, upstream, info.upstream);
      } catch (err) {
        r.failed(conn, err, 'IP flow failed');
        socket.resetAndDestroy();
      }
    })();
  };

  const baseUdp = base.onUdpFlow;
  const toBase = (udp: UdpFlow<R>) => (baseUdp ? baseUdp(udp) : void (udp.onDatagram = (p) => udp.send(p)));
  const udpHooked = Boolean(r.ingressConnection || r.udpConnect || udpViaEgress);
  /**
   * UDP flows: `ingress.handleConnection`, then the egress pipeline (handleConnection,
   * udpConnectOverride for direct, tunnel, downgrade) when the app hooks egress; with no
   * pipeline (embedded IP edges) `egress.udpConnectOverride` may still hand back its own
   * association. Otherwise the wrapped `onUdpFlow` (the edge's routing).
   */
  const onUdpFlow = (udp: UdpFlow<R>): void => {
    const state = flows.get(udp.flow as Flow<unknown>);
    if (!state || !udpHooked) return toBase(udp);
    const { conn } = state;
    const ctx = conn as HookContext<unknown>;
    const target = state.redirect ?? conn.local;
    const making = (async () => {
      if (r.ingressConnection && (await r.call(conn, 'ingress.handleConnection', r.ingressConnection, ctx))?.action === 'block') return 'blocked';
      if (udpViaEgress) return (await egress!.connectUdp(conn, target.address, target.port, conn.client)).assoc;
      return (r.udpConnect && (await r.call(conn, 'egress.udpConnectOverride', r.udpConnect, target, ctx))) || 'engine';
    })();
    bridgeUdp(
      udp,
      making,
      () => toBase(udp),
      (err) => r.failed(conn, err, 'IP flow failed'),
    );
  };

  return {
    ...base,
    decideFlow,
    // Hooks get sockets: an accepted connection always becomes one for onTcpStream.
    onTcpAccepted: undefined,
    onTcpStream,
    onUdpFlow,
    onFlowEnd(flow, reason) {
      const state = flows.get(flow as Flow<unknown>);
      if (state) {
        flows.delete(flow as Flow<unknown>);
        r.close(state.conn, {
          bytesIn: flow.bytesIn,
          bytesOut: flow.bytesOut,
          packetsIn: flow.packetsIn,
          packetsOut: flow.packetsOut,
          durationMs: Date.now() - state.conn.startedAt,
          reason,
        });
      }
      base.onFlowEnd?.(flow, reason);
    },
  };
}

/**
 * Installs `ipFlow.handlePacket` on an IP edge: every packet of a known flow passes the
 * hook before the engine (the first packet of a flow is `handleFlow`'s). Does nothing if
 * the hook is not implemented.
 */
export function attachPacketHook(edge: IpEdge<unknown>, runner: HookRunner, flows: FlowContexts): void {
  const hook = runner.handlePacket;
  if (!hook) return;
  // The hook sees every packet: none may take the native fast path.
  edge.fastPath = false;
  const view = new PacketView();
  const inner = edge.receive.bind(edge);
  edge.receive = (session: IpSession, packet: Buffer): void => {
    const parsed = parsePacket(packet, view);
    const flow = parsed.ok && !parsed.isFragment ? edge.table.lookup(session.scope, flowKey(parsed)) : undefined;
    const state = flow && flows.get(flow as Flow<unknown>);
    if (!state) return inner(session, packet);
    let action;
    try {
      action = runner.callPerPacket(state.conn, 'ipFlow.handlePacket', hook, packet, state.conn as HookContext<unknown>);
    } catch (err) {
      runner.failed(state.conn, err, 'IP flow failed');
      edge.table.end(flow!, 'closed');
      return;
    }
    if (action === 'drop') return;
    inner(session, Buffer.isBuffer(action) ? action : packet);
  };
}
