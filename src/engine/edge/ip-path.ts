/**
 * The edge's IP path joined to the tunnels (the product's main path): IP packets from
 * devices (SEQPACKET connected IP tunnels, GUE, devices on other hosts over the tunnel
 * transport) become flows; each new flow is routed by longest prefix on (vnet, destination)
 * to the tunnel that serves it; TCP flows are upgraded through the kernel and carried as
 * `tcp` streams to a connector of that tunnel, UDP flows as `udp` streams (payloads as QUIC
 * DATAGRAM frames where the connection has them), pings as ICMP messages on `ip-packets`
 * streams. No route, or a route whose tunnel has no live connector:
 * the device gets an ICMP destination unreachable at once, not a hang. A flow keeps the
 * route it was given until it ends, whatever the store does meanwhile.
 */
import type { Socket } from 'node:net';
import { Counter } from 'prom-client';
import { buildIcmp, buildIcmpUnreachable, formatAddress, parsePacket, PacketView, TransportKind } from '../packet/index.js';
import { DatagramRecordParser, encodeDatagramRecord } from '../protocol/datagram.js';
import { GueOnRamp, IpEdge, SeqpacketOnRamp, bridgeUdp, deriveGueKeys, type GueCredential, type GueDropReason, type UdpFlow } from './ip/index.js';
import { OxyError } from '../../core/errors.js';
import { unknownVnetError } from '../../core/vnets.js';
import type { Flow, FlowDecision, IpContext } from '../flow/index.js';
import type { ReassemblyLimits } from '../flow/reassembly.js';
import type { Logger } from '../observe/log.js';
import { scrapedCounter } from '../observe/metrics.js';
import { joinHostPort, splitHostPort } from '../../core/address.js';
import type { EdgeServer } from './server.js';
import type { DetailedRoute } from '../../store/index.js';
import type { IpOffRamp, VirtualNetwork } from '../hooks/index.js';
import type { TunnelStream } from '../transport/types.js';
import { pumpFlow } from '../transport/flow-pump.js';
import { coalesceWrites } from '../util/coalesce.js';
import { encodeRequestHeader, type Metadata } from '../protocol/stream-header.js';
import { TcpFlowStreams, type FlowOwner } from './tcp-flows.js';
import type { LiveConnection } from './registry.js';
import { revealResets, type AcceptedTcp } from '../native/index.js';
import { cut, FLOW_UNSENT, relay } from '../util/pump.js';
import { attachPacketHook, hasIpHooks, withIpHooks, type FlowContexts } from './pipeline/index.js';

/**
 * Flows one on-ramp session (a device connection, a GUE sender) may hold at once. Each private
 * flow holds a stream of a connector connection (1,000 each, 4 connections by default), so
 * one client alone cannot starve every other device's new flows (measured: 2,500 UDP flows
 * from one SEQPACKET session stalled another device's flows for the 30 s UDP idle timeout).
 */
export const DEFAULT_MAX_FLOWS_PER_SESSION = 1000;

export interface IpPathOptions {
  edge: EdgeServer;
  log: Logger;
  /** Unix SEQPACKET socket path for connected IP tunnels (`warp connect`). */
  seqpacketPath?: string;
  /** HOST:PORT for unconnected IP tunnels (GUE). */
  gueListen?: string;
  limits?: { maxFlows?: number; maxFlowsPerTenant?: number; maxFlowsPerSession?: number; reassembly?: ReassemblyLimits };
}

interface Routed {
  vnetId: string;
  route: DetailedRoute;
}

export interface IpPath {
  ipEdge: IpEdge<Routed>;
  /** Joins an enrolled device's `ip-packets` stream (its vnet resolved by the server). */
  deviceStreams(stream: TunnelStream, vnet: VirtualNetwork): void;
  /** The edge's own IP network of (tenant, vnet; none: the default) as an off-ramp for `downgrade` egress. */
  vnetOffRamp(tenant: string, vnet: VirtualNetwork | undefined): IpOffRamp;
  close(): Promise<void>;
}

export async function startIpPath(o: IpPathOptions): Promise<IpPath> {
  const { edge, log } = o;
  const unreachable = new Counter({
    name: 'oxy_edge_ip_unreachable_total',
    help: 'New IP flows answered with ICMP unreachable, by reason',
    labelNames: ['reason'],
    registers: [edge.metrics],
  });
  // Read at scrape time from the egress's counters.
  scrapedCounter(
    edge.metrics,
    'oxy_edge_udp_payloads_total',
    'UDP payloads of private flows sent toward connectors, by path: datagram, stream (too large for a QUIC DATAGRAM frame), dropped (the connection refused it)',
    'path',
    () => {
      const c = edge.egress.udpCounters;
      return { datagram: c.datagrams, stream: c.oversize, dropped: c.dropped };
    },
  );
  const tell = (flow: Flow<Routed>, packet: PacketView, reason: 'no-route' | 'no-connector') => {
    unreachable.inc({ reason });
    const icmp = buildIcmpUnreachable(packet, reason === 'no-connector' ? 'host' : 'network');
    const session = flow.attachment as { send(p: Buffer): void } | undefined;
    if (icmp && session) session.send(icmp);
    log.debug({ reason, dst: formatAddress(packet.dst), vnet: flow.scope.context.vnet }, 'IP flow unreachable');
  };

  let sendToClient: (flow: Flow<Routed>, packet: Buffer) => void = () => undefined;
  const echoes = new EchoRelay(edge, log, (flow, packet) => sendToClient(flow, packet));
  // The application's IP-flow hooks (--hooks) wrap the routing below; without them, no cost.
  const flows: FlowContexts = new WeakMap();
  // An upgraded TCP flow on its tunnel stream, opened at the accept. With early data the flow's
  // first chunk goes to the connector before its answer (it writes it to the host right after its
  // dial: a round trip sooner); the rest waits for the answer, so a slow dial holds at most that
  // one chunk (≤ 64 KiB) per flow.
  // With a connector that serves them, flows ride reused `tcp-flows` streams instead (tcp-flows.ts).
  const flowStreams = new TcpFlowStreams({ unsent: FLOW_UNSENT, returnUnsent: RETURN_UNSENT, early: earlyData, pump: PUMP_FLOWS });
  scrapedCounter(
    edge.metrics,
    'oxy_edge_tcp_flows_total',
    'Private TCP flows carried on tcp-flows streams, by stream: reused (it carried a flow before) or new',
    'stream',
    () => ({ reused: flowStreams.counters.reused, new: flowStreams.counters.opened }),
  );
  /**
   * The OPEN's request header is the same bytes for every flow to a destination: kept per (vnet,
   * tenant) and IPv4 destination and port (the text, the metadata and the encoding cost ~1.5 % of
   * the edge's main thread per new connection), at most OPENS_KEPT per scope.
   */
  const opens = new Map<string, Map<string, Map<number, Buffer>>>();
  const openFor = (flow: Flow<Routed>, vnetId: string): Buffer => {
    const tenant = flow.scope.context.tenant;
    const d = flow.dst;
    const key = d.length === 4 ? (((d[0]! << 24) | (d[1]! << 16) | (d[2]! << 8) | d[3]!) >>> 0) * 65536 + flow.dstPort : -1;
    let byTenant = opens.get(vnetId);
    let kept = byTenant?.get(tenant);
    const hit = key >= 0 ? kept?.get(key) : undefined;
    if (hit) return hit;
    const metadata: Metadata = [
      ['Vnet', vnetId],
      ['Tenant', tenant],
    ];
    const open = encodeRequestHeader({ kind: 'tcp', destination: joinHostPort(formatAddress(d), flow.dstPort), metadata });
    if (key < 0) return open;
    if (!byTenant) opens.set(vnetId, (byTenant = new Map()));
    if (!kept) byTenant.set(tenant, (kept = new Map()));
    if (kept.size >= OPENS_KEPT) kept.clear();
    kept.set(key, open);
    return open;
  };
  /** What carries a flow on a tcp-flows stream tells (made once: the flow comes as the argument). */
  const flowOwner: FlowOwner<Flow<Routed>> = {
    failed: (err, flow) => log.info({ err, dst: joinHostPort(formatAddress(flow.dst), flow.dstPort) }, 'Private TCP flow failed'),
    // Its end by the table (idle, the device gone) ends the pump and its stream.
    pumped: (end, flow) => void (flow.handle = end),
  };
  /** A flow on a reused tcp-flows stream of `live`: a socket, or the addon's accepted connection. */
  const carryOnFlows = (live: LiveConnection, socket: Socket | AcceptedTcp, flow: Flow<Routed>, vnetId: string): void => {
    flowStreams.carry(live, openFor(flow, vnetId), socket, flowOwner, flow);
  };
  const carry = (socket: Socket, flow: Flow<Routed>, vnetId: string): void => {
    socket.on('error', ignore);
    const live = edge.egress.connectionFor(vnetId, flow.dst);
    if (live && flowStreams.serves(live)) return carryOnFlows(live, socket, flow, vnetId);
    const early = earlyData ? new EarlyChunk(socket) : undefined;
    edge.egress
      .open('tcp', vnetId, flow.dst, flow.dstPort, [['Tenant', flow.scope.context.tenant]], early?.opened)
      .then(({ stream }) => {
        // A cut flow (the stream failed, the table ended it) resets the device's connection, not a FIN.
        stream.on('error', () => cut(socket));
        socket.on('error', () => stream.destroy());
        early?.answered();
        if (socket.destroyed) return void stream.destroy();
        // Over QUIC on ngtcp2 the addon moves the bytes both ways (no JS per chunk); the flow's end
        // by the table (idle, session closed) ends the pump as it would have destroyed the socket.
        const pumped = PUMP_FLOWS ? pumpFlow(stream, socket) : undefined;
        if (pumped) {
          flow.handle = { destroy: pumped.abort };
          return;
        }
        coalesceWrites(stream, socket);
        // The socket's reads pause only above FLOW_UNSENT queued on the stream (not at its 16 KiB
        // mark: a stop and restart of the socket per 64 KiB read). The other way stops at
        // RETURN_UNSENT (see there).
        if (FLOW_UNSENT) relay(socket, stream, FLOW_UNSENT, true).catch(() => stream.destroy());
        else socket.pipe(stream);
        if (RETURN_UNSENT) relay(stream, socket, RETURN_UNSENT, true).catch(() => cut(socket));
        else stream.pipe(socket);
        socket.resume();
      })
      .catch((err: Error) => {
        early?.answered();
        log.info({ err, dst: `${formatAddress(flow.dst)}:${flow.dstPort}` }, 'Private TCP flow failed');
        socket.resetAndDestroy();
      });
  };
  /**
   * A route's `upgrade` decision, one object per route (decisions are replaced, never changed): the
   * flow holds it until its linger ends, two objects per flow that lived to be promoted.
   */
  const upgrades = new WeakMap<DetailedRoute, FlowDecision<Routed>>();
  const upgradeTo = (vnetId: string, route: DetailedRoute): FlowDecision<Routed> => {
    const kept = upgrades.get(route);
    if (kept && kept.route?.vnetId === vnetId) return kept;
    const decision: FlowDecision<Routed> = { verdict: 'upgrade', route: { vnetId, route } };
    upgrades.set(route, decision);
    return decision;
  };
  const ipEdge = await IpEdge.create<Routed>(
    withIpHooks(
      edge.hooks,
      {
        limits: { ...o.limits, maxFlowsPerSession: o.limits?.maxFlowsPerSession ?? DEFAULT_MAX_FLOWS_PER_SESSION },
        reassembly: o.limits?.reassembly,
        decideFlow(flow, packet) {
          // The on-ramp resolved the vnet: the context carries its ID (a vnet deleted since has no routes).
          const vnetId = flow.scope.context.vnet;
          // The flow's copy of the destination (packet.dst makes a view each time).
          const route = edge.egress.route(vnetId, flow.dst);
          if (!route) {
            tell(flow, packet, 'no-route');
            return 'drop';
          }
          if (!edge.registry.canPick(route.tunnelId)) {
            edge.egress.noConnector++;
            tell(flow, packet, 'no-connector');
            return 'drop';
          }
          if (packet.transport === TransportKind.Tcp || packet.transport === TransportKind.Udp) return upgradeTo(vnetId, route);
          // Pings travel as IP to the connector, which echoes them off the private host.
          if (packet.isEcho) return { verdict: 'forward', route: { vnetId, route } };
          return 'drop';
        },
        // A SYN the addon started (IpEdge's nativeSyn): decideFlow's TCP answer, without its ICMP
        // (the flow is reset instead). Not with IP hooks: theirs is the decision.
        nativeSyn: hasIpHooks(edge.hooks)
          ? undefined
          : (flow) => {
              const vnetId = flow.scope.context.vnet;
              const route = edge.egress.route(vnetId, flow.dst);
              if (!route || !edge.registry.canPick(route.tunnelId)) return undefined;
              return upgradeTo(vnetId, route);
            },
        onIpPacket(flow, packet) {
          echoes.send(flow, packet);
        },
        onFlowEnd(flow) {
          echoes.end(flow);
        },
        // No net.Socket where the connection's pump takes the addon's accepted connection at the
        // ANSWER (QUIC on ngtcp2, tcp-flows): its first chunk is read there too.
        onTcpAccepted(conn, flow) {
          if (!PUMP_FLOWS) return false;
          // The route the SYN was given (the flow keeps it): no second lookup per flow.
          const { vnetId, route } = flow.decision.route!;
          const live = edge.registry.pick(route.tunnelId);
          if (!live?.conn.pumpsTokens || !flowStreams.serves(live)) return false;
          carryOnFlows(live, conn, flow, vnetId);
          return true;
        },
        onTcpStream(socket: Socket, flow) {
          const { vnetId } = flow.decision.route!;
          socket.pause();
          // The device's reset is the flow's reset, also when its bytes were still unread.
          revealResets(socket);
          carry(socket, flow, vnetId);
        },
        onUdpFlow(udp: UdpFlow<Routed>) {
          const flow = udp.flow;
          const dst = `${formatAddress(flow.dst)}:${flow.dstPort}`;
          const making = edge.egress.openUdp(flow.decision.route!.vnetId, formatAddress(flow.dst), flow.dstPort, [['Tenant', flow.scope.context.tenant]]);
          bridgeUdp(
            udp,
            making.then((r) => r.assoc),
            () => undefined,
            (err) => log.info({ err, dst }, 'Private UDP flow failed'),
          );
        },
      },
      edge.hookedEgress,
      flows,
    ),
  );
  attachPacketHook(ipEdge as unknown as IpEdge, edge.hooks, flows);
  // New flows refused by a limit (global, tenant, session) or for want of a NAT slot.
  scrapedCounter(
    edge.metrics,
    'oxy_edge_ip_flows_refused_total',
    'New IP flows refused by a limit (ip-limits) or for want of a NAT slot, by reason',
    'reason',
    () => ipEdge.table.stats.refused,
  );
  // TCP flows the addon registered and wrote at their SYN (native SYNs), and those JS then refused.
  scrapedCounter(
    edge.metrics,
    'oxy_edge_native_syns_total',
    "Private TCP flows whose SYN the addon registered and wrote to the upgrade TUN before any JS (the session's flows were upgraded to that destination and port before), by outcome: started (JS took the flow) or refused (a limit, or the route gone: reset)",
    'outcome',
    () => ({ started: ipEdge.stats.nativeSyns - ipEdge.stats.nativeSynsRefused, refused: ipEdge.stats.nativeSynsRefused }),
  );
  // The fast path's own writes read in their turn (native/fast-nat.ts totals): cheap to watch, and
  // how a test sees that a kept connection's requests and answers take the short way.
  scrapedCounter(
    edge.metrics,
    'oxy_edge_same_turn_reads_total',
    "Reads made in the loop turn of the fast path's write that made them due, by what was read: socket (an upgraded flow's, after its request reached the TUN), tun (after a pump wrote an answer) or tun_counted (those tun reads that stopped at the packets the writes made, without a read that found none)",
    'what',
    () => {
      const t = ipEdge.upgrader.fastNat.totals;
      return { socket: t.sameTurnSockets, tun: t.sameTurnTun, tun_counted: t.sameTurnTunCounted };
    },
  );
  // An accepted connection's first chunk read by the addon in the accept's turn (sent with the
  // flow's OPEN: the device's request came with its ACK) or at a wake-up after it.
  scrapedCounter(
    edge.metrics,
    'oxy_edge_early_reads_total',
    "Accepted connections' first chunks read by the addon for their flow's QUIC pump, by when: accept (in the accept's turn, sent with the flow's OPEN) or wake (at a wake-up after it: the chunk came later, or OXY_FLOW_EARLY_AT_ACCEPT=0)",
    'when',
    () => ipEdge.upgrader.earlyReads(),
  );
  // The fast path's packets by where they went: a client's to the TUN, the kernel's to its client,
  // lost to a failed write, or refused by a full client socket (then queued and sent by JS: the slow
  // way a download takes when the device's socket is full).
  scrapedCounter(
    edge.metrics,
    'oxy_edge_fast_nat_packets_total',
    'Packets of upgraded flows the edge passed natively, by outcome: to_kernel (client → TUN), to_client (TUN → client), lost (a failed write), refused (a full client socket: sent by JS instead)',
    'outcome',
    () => {
      const t = ipEdge.upgrader.fastNat.totals;
      return { to_kernel: t.toKernel, to_client: t.toClients, lost: t.lost, refused: t.refused };
    },
  );
  // The fast path's TUN writes that went to the kernel in batches (one io_uring_enter each batch),
  // and the TUN reads made in those calls.
  scrapedCounter(
    edge.metrics,
    'oxy_edge_tun_ring_total',
    "The fast path's TUN writes submitted in batches through io_uring, the io_uring_enter calls that submitted them, and the reads made in those calls of handed-over device TUNs (reads) and of the upgrade TUN (upgrade_reads) (all 0 with OXY_IP_TUN_RING=0; the reads 0 with OXY_IP_TUN_RING_READS=0)",
    'what',
    () => {
      const t = ipEdge.upgrader.fastNat.totals;
      return { writes: t.tunRingWrites, enters: t.tunRingEnters, reads: t.tunRingReads, upgrade_reads: t.tunRingUpgradeReads };
    },
  );
  sendToClient = (flow, packet) => ipEdge.sendToClient(flow, packet);

  // The on-ramps only feed packets in: the route type parameter does not concern them.
  const anyEdge = ipEdge as unknown as IpEdge;
  // A local device names its vnet in its context: resolved here, once; an unknown one is refused at once.
  const resolveContext = (context: IpContext): IpContext => {
    const vnet = edge.view.vnet(context.vnet);
    if (!vnet) throw unknownVnetError(context.vnet);
    return { ...context, vnet: vnet.id, vnetName: vnet.name };
  };
  const seqpacket = o.seqpacketPath ? new SeqpacketOnRamp(anyEdge, o.seqpacketPath, { resolveContext }) : undefined;
  // Devices on other hosts: one IP session per ip-packets stream (its vnet resolved by the server), packets as datagram records.
  const deviceStreams = (stream: TunnelStream, vnet: VirtualNetwork): void => {
    const session = anyEdge.openSession({ tenant: edge.view.accountTag, vnet: vnet.id, vnetName: vnet.name }, (packet) =>
      stream.write(encodeDatagramRecord(packet)),
    );
    const parser = new DatagramRecordParser();
    stream.on('data', (chunk: Buffer) => {
      for (const packet of parser.push(chunk)) session.receive(packet);
      session.clock();
    });
    const end = () => session.close();
    stream.once('end', end);
    stream.once('close', end);
  };
  // The vnet off-ramp (`downgrade` egress toward the edge's own network): a stream the hooks
  // took over leaves as IP packets that come back in here in a scope of their own (tenant,
  // vnet, reentry), are routed like a device's flows without the hooks, and reach the tunnel
  // that serves the destination. One session per (tenant, vnet).
  const offRamps = new Map<string, { offRamp: IpOffRamp; session: { close(): void } }>();
  const vnetOffRamp = (tenant: string, named: VirtualNetwork | undefined): IpOffRamp => {
    const vnet = named ?? edge.view.vnet(undefined) ?? { id: '', name: '' };
    const key = `${tenant}\u0000${vnet.id}`;
    let entry = offRamps.get(key);
    if (!entry) {
      let toDowngrader: (packet: Buffer) => void = () => undefined;
      const session = anyEdge.openSession({ tenant, vnet: vnet.id, vnetName: vnet.name, reentry: true }, (packet) => toDowngrader(packet));
      const offRamp: IpOffRamp = {
        send(packet) {
          session.clock();
          session.receive(packet);
        },
        onPacket: (receive) => void (toDowngrader = receive),
      };
      offRamps.set(key, (entry = { offRamp, session }));
    }
    return entry.offRamp;
  };
  const gue = o.gueListen ? await startGue(edge, anyEdge, log, o.gueListen) : undefined;
  if (seqpacket) log.info({ path: o.seqpacketPath }, 'IP tunnel on-ramp ready (SEQPACKET)');
  if (gue) log.info({ address: gue.address }, 'IP tunnel on-ramp ready (GUE)');
  return {
    ipEdge,
    deviceStreams,
    vnetOffRamp,
    close: async () => {
      for (const { session } of offRamps.values()) session.close();
      seqpacket?.close();
      gue?.close();
      ipEdge.close();
      flowStreams.close();
    },
  };
}

/** OPEN headers kept per (vnet, tenant) (openFor): past this many destinations the scope's are dropped. */
const OPENS_KEPT = 4096;
/** OXY_IP_PUMP=0: the upgraded socket's bytes go through JS (relay, tcp-flows links) even where the stream could pump them (A/B runs). */
const PUMP_FLOWS = process.env.OXY_IP_PUMP !== '0';
/** OXY_IP_EARLY_DATA=0: nothing goes to the connector before its answer (as before; for A/B runs). */
const earlyData = process.env.OXY_IP_EARLY_DATA !== '0';
/**
 * The stream → upgraded socket direction's bound. At pipe()'s 16 KiB mark the stream paused after
 * every chunk, so each event-loop turn wrote one 16 KiB writev (iperf3 -R: ~260 system calls per
 * MB in the edge); at 1 MiB the queue outran the socket, whose reader is our own TUN path, and
 * the partial writevs and the copies of their rest cost more (edge 2.9 against 2.0 ms/MB); 64 KiB
 * (one TUN segment) halved the calls at or below pipe()'s CPU per MB (docs/decisions.md).
 */
const RETURN_UNSENT = FLOW_UNSENT ? 64 * 1024 : 0;

/**
 * The first chunk a paused upgraded socket reads before its stream is answered: written to the
 * stream as soon as both exist, and the socket paused again until the answer.
 */
class EarlyChunk {
  #stream: TunnelStream | undefined;
  #chunk: Buffer | undefined;
  #done = false;
  readonly #onData = (chunk: Buffer): void => {
    this.socket.pause();
    this.socket.off('data', this.#onData);
    if (this.#stream) this.#stream.write(chunk);
    else this.#chunk = chunk;
  };

  constructor(private readonly socket: Socket) {
    socket.on('data', this.#onData);
    socket.resume();
  }

  readonly opened = (stream: TunnelStream): void => {
    if (this.#done) return;
    this.#stream = stream;
    if (this.#chunk) stream.write(this.#chunk);
    this.#chunk = undefined;
  };

  /** The answer came (or the open failed): the socket is the caller's again, paused. */
  answered(): void {
    this.#done = true;
    this.socket.off('data', this.#onData);
    this.socket.pause();
  }
}

const ignore = (): void => undefined;

const GUE_HINTS: Partial<Record<GueDropReason, string>> = {
  unauthenticated: 'GUE context v1 carries no key: senders need a device key (oxyctl warp enroll NAME) and the v2 context (docs/gue.md)',
  'unknown-key': 'the key ID is not an enrolled device (oxyctl warp devices), or it was revoked',
  'bad-mac': "the MAC does not verify with the device's key",
  stale: "the sender's clock is more than 2 minutes from the edge's (keep NTP on both)",
  replayed: 'a counter the edge has already seen (each sender needs a device key of its own)',
  'wrong-tenant': 'the context names a tenant the key does not belong to',
  'wrong-vnet': 'the context names a vnet that does not exist',
};

const isLoopback = (host: string) => /^127\./.test(host) || host === '::1' || host === 'localhost';

/**
 * GUE on a non-loopback address with no enrolled device would be a port nobody may use:
 * refused at start with what to do (checked before anything listens).
 */
export function checkGueListen(listen: string, enrolledDevices: number): void {
  const { host } = splitHostPort(listen);
  if (!isLoopback(host) && enrolledDevices === 0) {
    throw new OxyError(
      'OXY_ERR_GUE_NO_KEYS',
      `GUE on ${listen} would accept no sender: no device is enrolled. Enroll one first (oxyctl warp enroll NAME), or bind GUE to loopback (--gue-listen 127.0.0.1:PORT).`,
    );
  }
}

/**
 * The GUE on-ramp keyed by enrolled devices: each datagram must carry a device's key ID and
 * a MAC under its key; its tenant must be the store's account and its vnet a live one.
 * Drops are counted by reason (metrics) and logged at most every 10 s per reason.
 */
async function startGue(edge: EdgeServer, ipEdge: IpEdge, log: Logger, listen: string): Promise<{ address: string; close(): void }> {
  const { host, port } = splitHostPort(listen);
  const dropped = new Counter({
    name: 'oxy_edge_gue_dropped_total',
    help: 'GUE datagrams dropped, by reason',
    labelNames: ['reason'],
    registers: [edge.metrics],
  });
  const lastLogged = new Map<GueDropReason, number>();
  const credentials = new Map<string, GueCredential>();
  const gue = await GueOnRamp.listen(ipEdge, {
    host,
    port,
    credentials(keyId) {
      let credential = credentials.get(keyId);
      if (credential) return credential;
      const secret = edge.view.enrolledDevice(keyId);
      if (!secret) return undefined;
      credential = {
        keys: deriveGueKeys(secret),
        tenant: edge.view.accountTag,
        // A live vnet the device may use (warp enroll --vnet); undefined refuses ('wrong-vnet').
        vnet: (ref) => {
          const vnet = edge.view.vnet(ref);
          return vnet && edge.view.deviceMayUse(keyId, vnet.id) ? vnet : undefined;
        },
      };
      credentials.set(keyId, credential);
      return credential;
    },
    onDrop(reason, from) {
      dropped.inc({ reason });
      const now = Date.now();
      if (now - (lastLogged.get(reason) ?? 0) < 10_000) return;
      lastLogged.set(reason, now);
      log.warn({ reason, from, hint: GUE_HINTS[reason] }, 'GUE datagram refused (further ones for this reason are only counted for 10 s)');
    },
  });
  // Revoked devices and deleted vnets end their sessions at the next store reload.
  const recheck = () => {
    credentials.clear();
    gue.recheck();
  };
  edge.view.on('reload', recheck);
  return {
    // The bound port: a sender must learn it when the edge was given port 0.
    address: joinHostPort(host, gue.port),
    close() {
      edge.view.off('reload', recheck);
      gue.close();
    },
  };
}

/**
 * ICMP echo flows through tunnels: the ICMP message (no IP header) of each request goes
 * on an `ip-packets` stream to the connector; each reply comes back as an ICMP message
 * and is wrapped in an IP header addressed to the device.
 */
class EchoRelay {
  readonly #streams = new WeakMap<Flow<Routed>, { stream?: NodeJS.ReadWriteStream; pending: Buffer[]; closed?: boolean }>();
  readonly #view = new PacketView();

  constructor(
    private readonly edge: EdgeServer,
    private readonly log: Logger,
    private readonly toClient: (flow: Flow<Routed>, packet: Buffer) => void,
  ) {}

  send(flow: Flow<Routed>, packet: Buffer): void {
    const view = parsePacket(packet, this.#view);
    if (!view.ok) return;
    const message = Buffer.from(packet.subarray(view.l4Offset, view.length));
    let state = this.#streams.get(flow);
    if (!state) {
      state = { pending: [] };
      this.#streams.set(flow, state);
      this.#open(flow, state);
    }
    if (state.stream) state.stream.write(encodeDatagramRecord(message));
    else if (state.pending.length < 16) state.pending.push(message);
  }

  #open(flow: Flow<Routed>, state: { stream?: NodeJS.ReadWriteStream; pending: Buffer[]; closed?: boolean }): void {
    const { vnetId } = flow.decision.route!;
    this.edge.egress
      .open('ip-packets', vnetId, formatAddress(flow.dst), 0, [['Tenant', flow.scope.context.tenant]])
      .then(({ stream }) => {
        if (state.closed) return stream.end();
        state.stream = stream;
        for (const m of state.pending.splice(0)) stream.write(encodeDatagramRecord(m));
        const parser = new DatagramRecordParser();
        stream.on('data', (chunk: Buffer) => {
          for (const icmp of parser.push(chunk)) {
            if (icmp.length < 8) continue;
            const reply = buildIcmp({ src: flow.dst, dst: flow.src }, icmp[0], icmp[1], icmp.readUInt32BE(4), icmp.subarray(8));
            this.toClient(flow, reply);
          }
        });
        stream.on('error', () => undefined);
      })
      .catch((err: Error) => this.log.info({ err, dst: formatAddress(flow.dst) }, 'Private ICMP flow failed'));
  }

  end(flow: Flow<Routed>): void {
    const state = this.#streams.get(flow);
    if (!state) return;
    state.closed = true;
    state.stream?.end();
  }
}
