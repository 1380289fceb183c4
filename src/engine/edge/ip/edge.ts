/**
 * The IP layer of the edge: on-ramped IP packets → flow tracking → a per-flow decision
 * (memoized) → upgrade (TCP through the NAT/TUN namespace to a net.Socket, UDP and ICMP
 * echo in user space), forward (IP off-ramp), drop or reject.
 *
 * On-ramps (SEQPACKET, GUE, or anything else) open an {@link IpSession} per context and
 * feed it packets; replies for the client come out of the session's `send`.
 *
 * With no callbacks at all the edge serves locally, which is what tests want: TCP
 * streams and UDP datagrams are echoed, ICMP echo requests answered.
 *
 * IP fragments are reassembled per scope first (../../flow/reassembly.ts); the whole
 * datagram then takes the same path as one that arrived unfragmented.
 *
 * Callback order for a new flow: decideFlow → onFlowStart → (TCP: onTcpStream once the
 * kernel accepted the connection; UDP: onUdpFlow before its first datagram) → … →
 * onFlowEnd. Callbacks run synchronously on the packet path: keep them short.
 */
import type net from 'node:net';

import { FlowTable, type FlowHooks, type FlowLimits, type FlowTimeouts } from '../../flow/table.js';
import { Reassembler, type ReassemblyLimits } from '../../flow/reassembly.js';
import type { Flow, FlowScope } from '../../flow/flow.js';
import type { FlowDecision, FlowEndReason, FlowVerdict, IpContext } from '../../flow/types.js';
import {
  IpProtocol,
  PacketView,
  TcpFlag,
  TransportKind,
  buildIcmpEcho,
  buildIcmpReassemblyTimeExceeded,
  buildTcp,
  buildUdp,
  flowKey,
  parsePacket,
  type MalformedReason,
} from '../../packet/index.js';
import { UnnamedNetns } from '../../netns/namespace.js';
import { TcpUpgrader, type SynTicket, type UpgraderOptions } from '../../netns/upgrader.js';
import { socketFd, tcpCongestion, type AcceptedTcp } from '../../native/index.js';

/**
 * The upgraded sockets of a near client's flows (a device on this host: the SEQPACKET on-ramp, its
 * TUN handed over or relayed) send with Reno, not the namespace's default (the host's: BBR on these
 * machines, which paces each socket with a timer where the TUN has no fq qdisc). Their path is a TUN
 * the fast path drains as fast as the kernel writes it: pacing only spread a download's segments over
 * more wake-ups (-R: the edge's CPU per MB −15 % in quiet pairs, docs/decisions.md session 20's lead section). A
 * device on another host keeps the default: its inner TCP crosses a real path. OXY_IP_NEAR_RENO=0
 * (read when the edge is made): the default for every flow.
 */
const nearReno = (): boolean => process.env.OXY_IP_NEAR_RENO !== '0';

/**
 * Native SYNs: tickets (a flow id and a NAT slot reserved) the addon holds per client socket, so
 * that many SYNs in one read batch need no JS before their write. Few: each holds a slot.
 */
const SYN_TICKETS = 2;
/** Destinations admitted per session for native SYNs; all forgotten when full. */
const MAX_ADMITTED = 256;

export interface IpEdgeOptions<R = unknown> extends FlowHooks<R> {
  /**
   * Decides a new flow from its first packet (synchronously); memoized for the flow.
   * Default: upgrade TCP, UDP and ICMP echo; drop the rest.
   */
  decideFlow?(flow: Flow<R>, packet: PacketView): FlowDecision<R> | FlowVerdict;
  /** An upgraded TCP flow as an ordinary connected socket. Default: echo. */
  onTcpStream?(socket: net.Socket, flow: Flow<R>): void;
  /**
   * An upgraded TCP flow the addon accepted, before any net.Socket is made for it: true when the
   * callee carries it as it is (its token to a transport's pump); false, and it becomes a socket
   * for onTcpStream. The hooks never see it (withIpHooks leaves it out: they get sockets).
   */
  onTcpAccepted?(conn: AcceptedTcp, flow: Flow<R>): boolean;
  /** An upgraded UDP flow. Default: echo every datagram. */
  onUdpFlow?(udp: UdpFlow<R>): void;
  /** Packets of `forward` flows (the IP off-ramp); answer with edge.sendToClient(flow, packet). Default: drop. */
  onIpPacket?(flow: Flow<R>, packet: Buffer): void;
  limits?: FlowLimits;
  timeouts?: FlowTimeouts;
  /** IP fragment reassembly: timeout and memory budgets (defaults in ReassemblyLimits). */
  reassembly?: ReassemblyLimits;
  /** The TUN upgrade namespace: its TUN and NAT settings. */
  upgrade?: UpgraderOptions;
  /** Share an existing namespace; default: a new one, closed with the edge. */
  ns?: UnnamedNetns;
  /**
   * Established TCP flows of SEQPACKET clients go on the upgrader's native fast path (no JS
   * per packet; see netns/upgrader.ts goFast). Default true; OXY_IP_FAST_PATH=0 turns it off
   * (to compare); a per-packet hook (attachPacketHook) turns it off too.
   */
  fastPath?: boolean;
  /**
   * Native SYNs: a client SYN on the fast path (a SEQPACKET client's, IPv4) to a destination and
   * port this session's flows were upgraded to before is registered and written to the TUN by the
   * addon in its read batch, before any JS; its SYN-ACK is read in the same turn. JS then takes the
   * flow in that turn (adoptBorn): the limits, then this function — the decision decideFlow would
   * give it now, or undefined where it would not upgrade it — then onFlowStart, as for any flow. A
   * flow refused there gets an RST (both ways: the device and the kernel's half-open connection).
   * Only for edges whose decideFlow is a pure function of (scope, destination) that this function
   * repeats without side effects (ip-path.ts's, with no IP hooks). On by default: in quiet pairs one
   * new connection alone came 0.06 ms sooner (5 of 5) for ~4 µs more edge CPU per connection
   * (docs/decisions.md, session 24, lead). OXY_IP_NATIVE_SYN=0: every SYN
   * goes to JS, as before.
   */
  nativeSyn?(flow: Flow<R>): FlowDecision<R> | undefined;
}

export interface IpEdgeStats {
  /** Packets received: fragments as they arrived, and each datagram reassembled from them once more. */
  packetsIn: number;
  packetsOut: number;
  /** Refused by the parser, by reason. */
  malformed: Partial<Record<MalformedReason, number>>;
  /**
   * Dropped for a reason other than malformed (tcp-no-flow, verdict-drop, …; fragment-*
   * from reassembly: see ReassemblyDrop).
   */
  dropped: Record<string, number>;
  /** Datagrams reassembled from fragments (each then received as one packet). */
  reassembled: number;
  /** TCP flows the addon registered at their SYN (nativeSyn), and those JS then refused (reset). */
  nativeSyns: number;
  nativeSynsRefused: number;
}

/** The default decision: what the edge can serve locally. */
export function defaultDecision(_flow: Flow, view: PacketView): FlowVerdict {
  if (view.transport === TransportKind.Tcp || view.transport === TransportKind.Udp) return 'upgrade';
  if (view.transport === TransportKind.Icmp && view.isEcho) return 'upgrade';
  return 'drop';
}

function echoStream(socket: net.Socket): void {
  socket.pipe(socket);
}

function echoDatagrams(udp: UdpFlow): void {
  udp.onDatagram = (payload) => udp.send(payload);
}

export class IpEdge<R = unknown> {
  readonly table: FlowTable<R>;
  readonly stats: IpEdgeStats = { packetsIn: 0, packetsOut: 0, malformed: {}, dropped: {}, reassembled: 0, nativeSyns: 0, nativeSynsRefused: 0 };
  readonly reassembler: Reassembler;
  private readonly view = new PacketView();
  private readonly decide: (flow: Flow<R>, packet: PacketView) => FlowDecision<R> | FlowVerdict;
  private readonly onTcpStream: (socket: net.Socket, flow: Flow<R>) => void;
  private readonly onTcpAccepted: ((conn: AcceptedTcp, flow: Flow<R>) => boolean) | undefined;
  private readonly onUdpFlow: (udp: UdpFlow<R>) => void;
  private readonly onIpPacket: ((flow: Flow<R>, packet: Buffer) => void) | undefined;
  private readonly sessions = new Set<IpSession>();
  /** Flows on the native fast path (their counters are brought up to date before each sweep). */
  private readonly fastFlows = new Set<Flow<R>>();
  /** Whether established flows may take the fast path; false once something must see every packet. */
  fastPath: boolean;
  private readonly nativeSyn: ((flow: Flow<R>) => FlowDecision<R> | undefined) | undefined;
  /** Tickets the addon holds (every session's): each a flow that may start without JS's admit. */
  private ticketsOut = 0;
  private closed = false;

  private constructor(
    readonly ns: UnnamedNetns,
    private readonly ownsNs: boolean,
    readonly upgrader: TcpUpgrader,
    options: IpEdgeOptions<R>,
  ) {
    this.decide = options.decideFlow ?? defaultDecision;
    this.onTcpStream = options.onTcpStream ?? echoStream;
    this.onTcpAccepted = options.onTcpAccepted;
    this.onUdpFlow = options.onUdpFlow ?? (echoDatagrams as (udp: UdpFlow<R>) => void);
    this.onIpPacket = options.onIpPacket;
    this.fastPath = options.fastPath ?? process.env.OXY_IP_FAST_PATH !== '0';
    this.nativeSyn = process.env.OXY_IP_NATIVE_SYN !== '0' ? options.nativeSyn : undefined;
    this.table = new FlowTable<R>({
      limits: options.limits,
      timeouts: options.timeouts,
      hooks: { onFlowStart: options.onFlowStart, onFlowEnd: options.onFlowEnd },
      release: (flow, reason) => this.release(flow, reason),
      refresh: () => {
        for (const flow of this.fastFlows) this.syncFast(flow);
      },
    });
    this.reassembler = new Reassembler({
      limits: options.reassembly,
      onDrop: (reason) => this.drop(reason),
      onTimeout: (first, session) => this.reassemblyTimedOut(first, session as IpSession),
    });
    upgrader.onReturn = (flow, view) => this.fromKernel(flow as Flow<R>, view);
    const reno = nearReno();
    const near = (flow: Flow): boolean => reno && (flow.attachment as IpSession | undefined)?.nearClient === true;
    const takeSocket = (flow: Flow, socket: net.Socket): void => {
      flow.handle = socket;
      flow.established = true;
      socket.on('error', () => {});
      this.onTcpStream(socket, flow as Flow<R>);
    };
    // Node accepted it (OXY_IP_NATIVE_ACCEPT=0): Reno set through its fd.
    upgrader.onSocket = (flow, socket) => {
      if (near(flow)) tcpCongestion(socketFd(socket) ?? -1, 'reno');
      takeSocket(flow, socket);
    };
    upgrader.onAccepted = (flow, conn) => {
      if (near(flow)) conn.sendWith('reno');
      // Its destroy() is the flow's end until whoever carries it says otherwise.
      flow.handle = conn;
      flow.established = true;
      if (this.onTcpAccepted?.(conn, flow as Flow<R>)) return;
      takeSocket(flow, conn.socket());
    };
  }

  /**
   * A new upgraded TCP flow of a client that joined the fast path: from its SYN on, its packets
   * bypass JS except the client's SYNs and RSTs (and everything after an RST; every FIN too with
   * OXY_IP_NATIVE_FINS=0; see native/fast-nat.ts), so the handshake's ACK and what the client sends
   * before the socket is accepted go natively too.
   */
  private goFast(flow: Flow<R>): void {
    if (!this.fastPath || flow.ended || flow.finIn || flow.finOut) return;
    const peer = (flow.attachment as IpSession).fastPeer;
    if (peer !== undefined && this.upgrader.goFast(flow, peer)) this.fastFlows.add(flow);
  }

  /**
   * A fast flow's counters and the FINs that passed natively (native/fast-nat.ts nativeFins) brought
   * up to date: at each sweep, and before what needs the flow's close now (a SYN or RST of its
   * tuple, the session's limit).
   */
  private syncFast(flow: Flow<R>): void {
    this.upgrader.syncFast(flow);
    if (flow.closingSince !== 0) this.leaveSession(flow);
  }

  /**
   * Whether `session` holds its most flows; its fast flows' closes are read first (at most once
   * per tick of the table's clock), since those that closed natively no longer count.
   */
  private sessionFull(session: IpSession): boolean {
    const max = this.table.maxFlowsPerSession;
    if (session.flows < max) return false;
    if (session.syncedAt !== this.table.now && this.upgrader.fastNat.nativeFins) {
      session.syncedAt = this.table.now;
      for (const flow of this.fastFlows) if (flow.attachment === session) this.syncFast(flow);
    }
    return session.flows >= max;
  }

  /** Creates the namespace (unless given), its TUN and listener. Needs root (see netns/namespace.ts). */
  static async create<R = unknown>(options: IpEdgeOptions<R> = {}): Promise<IpEdge<R>> {
    const ns = options.ns ?? (await UnnamedNetns.create());
    let upgrader: TcpUpgrader;
    try {
      upgrader = await TcpUpgrader.create(ns, options.upgrade);
    } catch (err) {
      if (!options.ns) ns.close();
      throw err;
    }
    return new IpEdge<R>(ns, !options.ns, upgrader, options);
  }

  /**
   * A session for one on-ramp context (a SEQPACKET connection, a GUE sender): feed it
   * packets with receive(); packets for the client come out of `send`.
   */
  openSession(context: IpContext, send: (packet: Buffer) => void): IpSession {
    const session = new IpSession(this as IpEdge, this.table.scope(context) as FlowScope, send);
    this.sessions.add(session);
    return session;
  }

  /** Sends an IP packet to a flow's client (replies from the IP off-ramp of `forward` flows). */
  sendToClient(flow: Flow<R>, packet: Buffer): void {
    if (flow.ended) return;
    flow.packetsOut++;
    flow.bytesOut += packet.length;
    flow.lastSeen = this.table.now;
    this.stats.packetsOut++;
    (flow.attachment as IpSession).send(packet);
  }

  private malformed(reason: MalformedReason): void {
    this.stats.malformed[reason] = (this.stats.malformed[reason] ?? 0) + 1;
  }

  private drop(reason: string): void {
    this.stats.dropped[reason] = (this.stats.dropped[reason] ?? 0) + 1;
  }

  /** @internal The hot path: one packet from a session. */
  receive(session: IpSession, packet: Buffer): void {
    this.stats.packetsIn++;
    const view = parsePacket(packet, this.view);
    if (!view.ok) return this.malformed(view.reason);
    if (view.isFragment) return this.fragment(session, view);
    const table = this.table;
    const key = flowKey(view);
    let flow = table.lookup(session.scope, key);
    // Its FINs may have passed natively: a SYN (a reused tuple?) or an RST needs to know.
    if (flow && flow.fastId >= 0 && view.transport === TransportKind.Tcp && (view.tcpFlags & (TcpFlag.SYN | TcpFlag.RST)) !== 0) this.syncFast(flow);
    if (flow && flow.closingSince !== 0 && view.transport === TransportKind.Tcp && (view.tcpFlags & (TcpFlag.SYN | TcpFlag.ACK)) === TcpFlag.SYN) {
      // The client reuses the tuple of a flow that is closing: that flow is over.
      table.end(flow, 'fin');
      flow = undefined;
    }
    if (!flow) {
      flow = this.newFlow(session, view, key);
      if (!flow) return;
    }
    flow.lastSeen = table.now;
    flow.packetsIn++;
    flow.bytesIn += view.length;
    const verdict = flow.decision.verdict;
    if (verdict === 'upgrade') {
      switch (view.transport) {
        case TransportKind.Tcp: {
          const rst = flow.tcpFlags(view.tcpFlags, true, table.now);
          this.upgrader.toKernel(flow, view);
          if (rst) table.end(flow, 'rst');
          else if (flow.closingSince !== 0) this.leaveSession(flow);
          return;
        }
        case TransportKind.Udp:
          (flow.handle as UdpFlow<R>).deliver(view.payload);
          return;
        default:
          this.answerEcho(flow, view);
          return;
      }
    }
    if (verdict === 'forward') {
      if (view.transport === TransportKind.Tcp && flow.tcpFlags(view.tcpFlags, true, table.now)) {
        this.onIpPacket?.(flow, view.buf.subarray(0, view.length));
        table.end(flow, 'rst');
        return;
      }
      if (view.transport === TransportKind.Tcp && flow.closingSince !== 0) this.leaveSession(flow);
      if (this.onIpPacket) this.onIpPacket(flow, view.buf.subarray(0, view.length));
      else this.drop('no-off-ramp');
      return;
    }
    this.drop(verdict === 'reject' ? 'verdict-reject' : 'verdict-drop');
  }

  /**
   * One fragment: held until its datagram is whole, which then enters receive() again —
   * through whatever wraps it (the per-packet hook) — exactly as if it had arrived so.
   */
  private fragment(session: IpSession, fragment: PacketView): void {
    // Not the table's coarse clock: on-ramps need not advance it, and the timeout counts from here.
    const whole = this.reassembler.add(session.scope, fragment, session);
    if (!whole) return;
    this.stats.reassembled++;
    this.receive(session, whole);
  }

  /** ICMP "fragment reassembly time exceeded" to the sender of a datagram that never completed. */
  private reassemblyTimedOut(firstFragment: Buffer, session: IpSession): void {
    if (!this.sessions.has(session)) return;
    const error = buildIcmpReassemblyTimeExceeded(firstFragment);
    if (!error) return;
    this.stats.packetsOut++;
    session.send(error);
  }

  private newFlow(session: IpSession, view: PacketView, key: string): Flow<R> | undefined {
    const table = this.table;
    const tcp = view.transport === TransportKind.Tcp;
    // Only a SYN opens a TCP flow: anything else belongs to a flow we no longer know.
    if (tcp && (view.tcpFlags & (TcpFlag.SYN | TcpFlag.ACK | TcpFlag.RST)) !== TcpFlag.SYN) {
      this.drop('tcp-no-flow');
      return undefined;
    }
    if (view.transport === TransportKind.Icmp && !view.isEcho) {
      this.drop('icmp-no-flow');
      return undefined;
    }
    const refused = table.admit(session.scope) ?? (this.sessionFull(session) ? table.refuse(session.scope, 'session-limit') : undefined);
    if (refused) {
      if (tcp) this.resetClient(session, view);
      return undefined;
    }
    const flow = table.create(session.scope, key, view);
    flow.attachment = session;
    let decision: FlowDecision<R> | FlowVerdict;
    try {
      decision = this.decide(flow, view);
    } catch {
      // An application error must not take the on-ramp down: the flow is not started.
      this.drop('decide-error');
      return undefined;
    }
    flow.decision = typeof decision === 'string' ? { verdict: decision } : decision;
    if (flow.decision.verdict === 'reject') {
      if (tcp) this.resetClient(session, view);
      this.drop('verdict-reject');
      return undefined;
    }
    if (flow.decision.verdict === 'upgrade') {
      if (tcp) {
        if (!this.upgrader.attach(flow)) {
          table.refuse(session.scope, 'nat-exhausted');
          this.resetClient(session, view);
          return undefined;
        }
        flow.established = false;
      } else if (view.transport === TransportKind.Udp) {
        flow.handle = new UdpFlow<R>(this, flow);
      } else if (!(view.transport === TransportKind.Icmp && view.isEcho)) {
        flow.decision = { verdict: 'drop', route: flow.decision.route };
      }
    }
    this.startInSession(session, flow);
    if (tcp && flow.decision.verdict === 'upgrade') {
      this.goFast(flow);
      if (this.nativeSyn && flow.fastId >= 0 && flow.version === 4 && !session.context.reentry) this.admitNative(session, flow);
    }
    if (flow.handle instanceof UdpFlow) this.onUdpFlow(flow.handle);
    return flow;
  }

  private startInSession(session: IpSession, flow: Flow<R>): void {
    this.table.start(flow);
    session.flows++;
    // Counted in the session until released or past both FINs (a field: a WeakSet's add and
    // delete per flow grew and shrank an ephemeron table the scavenges walk).
    flow.inSession = true;
  }

  /**
   * The session's later SYNs to this flow's destination and port may start natively (nativeSyn):
   * the addon is told, and holds tickets for them.
   */
  private admitNative(session: IpSession, flow: Flow<R>): void {
    const peer = session.fastPeer!;
    const key = v4Key(flow.dst, flow.dstPort);
    if (!session.admitted.has(key)) {
      if (session.admitted.size >= MAX_ADMITTED) this.forgetAdmitted(session);
      session.admitted.add(key);
      this.upgrader.fastNat.handle.admit(peer, flow.dst, flow.dstPort);
    }
    this.refillTickets(session);
  }

  private forgetAdmitted(session: IpSession): void {
    session.admitted.clear();
    if (session.fastPeer !== undefined) this.upgrader.fastNat.handle.forget(session.fastPeer);
  }

  /**
   * Tickets for the session's native SYNs, up to SYN_TICKETS, while every limit has room for each
   * ticket the addon holds (so a native SYN's flow is within them when JS takes it).
   */
  private refillTickets(session: IpSession): void {
    const table = this.table;
    while (
      session.tickets.length < SYN_TICKETS &&
      session.admitted.size > 0 &&
      table.stats.active + this.ticketsOut < table.maxFlows - 1 &&
      session.scope.tenantState.flows + this.ticketsOut < table.maxFlowsPerTenant - 1 &&
      session.flows + session.tickets.length < table.maxFlowsPerSession - 1
    ) {
      const ticket = this.upgrader.ticket(session.fastPeer!);
      if (!ticket) return;
      session.tickets.push(ticket);
      this.ticketsOut++;
    }
  }

  /**
   * @internal The flows the addon registered at their SYNs (nativeSyn), taken in the turn of their
   * read batch, before its packets: each admitted and decided as newFlow would, or reset.
   */
  adoptBorn(): void {
    const records = this.upgrader.fastNat.handle.takeBorn();
    if (!records || this.closed) return;
    const table = this.table;
    table.clock();
    for (let at = 0; at + 24 <= records.length; at += 24) {
      const id = records.readUInt32LE(at);
      const peer = records.readUInt32LE(at + 4);
      let session: IpSession | undefined;
      for (const s of this.sessions) if (s.fastPeer === peer) session = s;
      const index = session ? session.tickets.findIndex((t) => t.id === id) : -1;
      // Its session closed first: its tickets went back then, and the addon forgot the peer's flows.
      if (!session || index < 0) continue;
      const ticket = session.tickets.splice(index, 1)[0]!;
      this.ticketsOut--;
      const flow = table.createFromTuple(
        session.scope,
        IpProtocol.TCP,
        records.subarray(at + 12, at + 16),
        records.readUInt16LE(at + 8),
        records.subarray(at + 16, at + 20),
        records.readUInt16LE(at + 10),
      );
      flow.attachment = session;
      this.upgrader.adoptBorn(flow, ticket);
      this.stats.nativeSyns++;
      // A flow of that tuple JS carries off the fast path (its table was full): the SYN is that
      // flow's, whose client sends it again — to JS then, the session's admissions forgotten.
      if (table.lookup(session.scope, flow.key)) {
        this.refuseBorn(session, flow, records.readUInt32BE(at + 20), false);
        continue;
      }
      const refused = table.admit(session.scope) ?? (this.sessionFull(session) ? table.refuse(session.scope, 'session-limit') : undefined);
      const decision = refused ? undefined : this.nativeSyn?.(flow);
      if (decision?.verdict !== 'upgrade') {
        this.refuseBorn(session, flow, records.readUInt32BE(at + 20), true);
        continue;
      }
      flow.decision = decision;
      flow.established = false;
      this.startInSession(session, flow);
      this.fastFlows.add(flow);
    }
    for (const session of this.sessions) if (session.tickets.length < SYN_TICKETS) this.refillTickets(session);
  }

  /**
   * A native SYN's flow JS would not start now (a limit, the route gone): an RST to the kernel's
   * half-open connection and (`resetClient`) one to the device, as a refused SYN gets; the
   * session's admitted destinations are forgotten (its SYNs go to JS until a flow is upgraded again).
   */
  private refuseBorn(session: IpSession, flow: Flow<R>, seq: number, resetClient: boolean): void {
    this.stats.nativeSynsRefused++;
    this.drop('native-syn-refused');
    const toKernel = parsePacket(
      buildTcp({ src: flow.src, dst: flow.dst, srcPort: flow.srcPort, dstPort: flow.dstPort, seq: (seq + 1) >>> 0, ack: 0, flags: TcpFlag.RST, window: 0 }),
      this.view,
    );
    if (toKernel.ok) this.upgrader.toKernel(flow, toKernel);
    this.upgrader.detach(flow);
    this.forgetAdmitted(session);
    if (resetClient) this.resetSyn(session, flow.src, flow.srcPort, flow.dst, flow.dstPort, seq);
  }

  /** RST for a refused SYN (as a host with no listener would answer). */
  private resetClient(session: IpSession, view: PacketView): void {
    if (view.transport !== TransportKind.Tcp) return;
    this.resetSyn(session, Buffer.from(view.src), view.srcPort, Buffer.from(view.dst), view.dstPort, view.tcpSeq);
  }

  /** The device's RST for its SYN (src:srcPort → dst:dstPort, sequence `seq`): from dst, acking the SYN. */
  private resetSyn(session: IpSession, src: Buffer, srcPort: number, dst: Buffer, dstPort: number, seq: number): void {
    const rst = buildTcp({ src: dst, dst: src, srcPort: dstPort, dstPort: srcPort, seq: 0, ack: (seq + 1) >>> 0, flags: TcpFlag.RST | TcpFlag.ACK, window: 0 });
    this.stats.packetsOut++;
    session.send(rst);
  }

  private answerEcho(flow: Flow<R>, view: PacketView): void {
    const request = view.version === 4 ? view.icmpType === 8 : view.icmpType === 128;
    if (!request) return this.drop('icmp-echo-reply');
    const reply = buildIcmpEcho({
      src: flow.dst,
      dst: flow.src,
      id: view.echoId,
      seq: view.echoSeq,
      reply: true,
      payload: view.payload,
    });
    this.sendToClient(flow, reply);
  }

  private fromKernel(flow: Flow<R>, view: PacketView): void {
    const packet = view.buf.length === view.length ? view.buf : view.buf.subarray(0, view.length);
    flow.packetsOut++;
    flow.bytesOut += view.length;
    flow.lastSeen = this.table.now;
    this.stats.packetsOut++;
    if (flow.fastId >= 0 && (view.tcpFlags & TcpFlag.RST) !== 0) this.syncFast(flow);
    const rst = flow.tcpFlags(view.tcpFlags, false, this.table.now);
    (flow.attachment as IpSession).send(packet);
    if (rst) this.table.end(flow, 'rst');
    else if (flow.closingSince !== 0) this.leaveSession(flow);
  }

  /**
   * A TCP flow past both FINs holds no stream any more, only its NAT slot while it lingers for
   * the last ACKs (tcpCloseLingerMs): it stops counting toward its session's limit. Counted, a
   * device opening short connections hit maxFlowsPerSession (1,000) at ~800 new connections/s
   * and every SYN beyond was reset (the bench's "slow mode" of flow setup).
   */
  private leaveSession(flow: Flow<R>): void {
    if (!flow.inSession) return;
    flow.inSession = false;
    (flow.attachment as IpSession).flows--;
  }

  private release(flow: Flow<R>, reason: FlowEndReason): void {
    this.leaveSession(flow);
    if (flow.protocol === IpProtocol.TCP) {
      this.fastFlows.delete(flow);
      this.upgrader.detach(flow);
      // After FIN or RST the kernel closes or resets the socket itself (the app sees 'end' or ECONNRESET).
      // The handle is the socket, or what carries its bytes now (the edge's transport pump).
      if (reason !== 'fin' && reason !== 'rst') (flow.handle as { destroy(): void } | undefined)?.destroy();
    } else if (flow.handle instanceof UdpFlow) {
      flow.handle.ended();
    }
  }

  /** @internal */
  closeSession(session: IpSession): void {
    if (!this.sessions.delete(session)) return;
    if (session.fastPeer !== undefined && (session.tickets.length > 0 || session.admitted.size > 0)) {
      this.upgrader.fastNat.handle.dropTickets(session.fastPeer);
      this.forgetAdmitted(session);
      this.ticketsOut -= session.tickets.length;
      for (const ticket of session.tickets.splice(0)) this.upgrader.unticket(ticket);
    }
    for (const flow of [...this.table.flows()]) if (flow.attachment === session) this.table.end(flow, 'session-closed');
  }

  /** @internal */
  clock(): void {
    this.table.clock();
  }

  /** Live sessions. */
  get sessionCount(): number {
    return this.sessions.size;
  }

  /** Ends every flow, closes the TUN, the listener and (unless shared) the namespace. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const session of [...this.sessions]) this.closeSession(session);
    this.table.close();
    this.reassembler.close();
    this.upgrader.close();
    if (this.ownsNs) this.ns.close();
  }
}

/** An IPv4 destination and port as one number. */
function v4Key(dst: Uint8Array, port: number): number {
  return (((dst[0]! << 24) | (dst[1]! << 16) | (dst[2]! << 8) | dst[3]!) >>> 0) * 65536 + port;
}

/** The flows of one on-ramp context. */
export class IpSession {
  private closed = false;
  /**
   * Its client is on this host (the SEQPACKET on-ramp): the upgraded sockets of its flows send with
   * Reno instead of the namespace's default congestion control (see nearReno).
   */
  nearClient = false;
  /** Flows of this session now (limits.maxFlowsPerSession). */
  flows = 0;
  /** The on-ramp's id on the upgrader's fast path (SeqpacketSocket.joinFastNat), if its socket joined. */
  fastPeer: number | undefined;
  /** @internal The table clock's tick at which its fast flows' closes were last read (IpEdge.sessionFull). */
  syncedAt = 0;
  /** @internal Destinations (v4Key) whose SYNs the addon may start (IpEdgeOptions.nativeSyn). */
  readonly admitted = new Set<number>();
  /** @internal Tickets the addon holds for this session's native SYNs. */
  readonly tickets: SynTicket[] = [];

  constructor(
    private readonly edge: IpEdge,
    readonly scope: FlowScope,
    /** Packets for the client. */
    readonly send: (packet: Buffer) => void,
  ) {}

  get context(): IpContext {
    return this.scope.context;
  }

  /** One raw IPv4/IPv6 packet from the client. Malformed packets are counted and dropped. */
  receive(packet: Buffer): void {
    if (this.closed) return;
    this.edge.receive(this, packet);
  }

  /** Advances the flow clock; on-ramps call it once per batch of packets. */
  clock(): void {
    this.edge.clock();
  }

  /** Ends the session's flows ('session-closed'). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.edge.closeSession(this);
  }
}

/**
 * An upgraded UDP flow: datagrams from the client arrive on `onDatagram`; `send` returns
 * datagrams to it (IP and UDP headers added: from the flow's destination to its source).
 */
export class UdpFlow<R = unknown> {
  /** Set by onUdpFlow; datagrams arriving without it are dropped. */
  onDatagram: ((payload: Buffer, udp: UdpFlow<R>) => void) | undefined;
  /** Called once when the flow ends (idle, session closed, shutdown). */
  onEnd: ((reason: FlowEndReason) => void) | undefined;

  constructor(
    private readonly edge: IpEdge<R>,
    readonly flow: Flow<R>,
  ) {}

  /** @internal */
  deliver(payload: Buffer): void {
    this.onDatagram?.(payload, this);
  }

  send(payload: Uint8Array): void {
    const flow = this.flow;
    this.edge.sendToClient(flow, buildUdp({ src: flow.dst, dst: flow.src, srcPort: flow.dstPort, dstPort: flow.srcPort, payload }));
  }

  /** Ends the flow now ('closed'). */
  close(): void {
    this.edge.table.end(this.flow, 'closed');
  }

  /** @internal */
  ended(): void {
    this.onEnd?.(this.flow.endReason ?? 'closed');
  }
}
