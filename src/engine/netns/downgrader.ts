/**
 * TCP downgrade: a TCP stream that must leave as IP packets. For each stream the
 * downgrader reserves a NAT slot, asks the namespace child for a client socket bound
 * to the slot and connected to a peer address routed into a TUN (so the kernel sends
 * the SYN), reads the stream's packets from the TUN, un-NATs them to the flow's real
 * tuple and hands them to the session's IP off-ramp (`send`). Packets coming back
 * (`receive`) are NATed the other way and written to the TUN.
 *
 * This is also how the tests talk to the edge: plain TCP clients → downgrader → raw IP
 * packets → the edge's connected IP on-ramp → upgrade → ordinary TCP streams.
 *
 * Namespace layout (defaults; only inside its unnamed namespace):
 *   slot addresses  198.18.64.0/18 (local on lo), 2001:db8:ff:64::/64 (local route)
 *   peer            198.18.128.1:9 / 2001:db8:ff:128::1 port 9, routed via oxdn0
 */
import type net from 'node:net';

import { FlowTable, type FlowHooks, type FlowTimeouts } from '../flow/table.js';
import { NatPool } from '../flow/nat.js';
import type { Flow, FlowScope } from '../flow/flow.js';
import type { FlowEndReason, IpContext } from '../flow/types.js';
import {
  IpProtocol,
  PacketView,
  TransportKind,
  formatAddress,
  parseAddress,
  parsePacket,
  reverseFlowKey,
  rewriteDestination,
  rewriteSource,
} from '../packet/index.js';
import { Tun, type PacketBatch } from '../native/index.js';
import { OxyError } from '../../core/errors.js';
import { UnnamedNetns } from './namespace.js';
import { writeAll, type TunLinkOptions } from './upgrader.js';
import { soon } from '../util/soon.js';

const PEER_PORT = 9;
const V4_PEER = '198.18.128.1';
const V6_PEER = '2001:db8:ff:128::1';

export interface DowngraderOptions extends TunLinkOptions {
  /** Share a namespace (e.g. the edge's); default: a new one, closed with the downgrader. */
  ns?: UnnamedNetns;
  hooks?: FlowHooks;
  timeouts?: FlowTimeouts;
  maxSlots?: number;
}

export interface DowngradeTarget {
  /** The flow's client address and port as the off-ramp will see them; port default: the next ephemeral. */
  src: string;
  srcPort?: number;
  dst: string;
  dstPort: number;
  /** Give up after this long (ms). Default 10 s. */
  timeoutMs?: number;
}

export interface DowngraderStats {
  toTun: number;
  fromTun: number;
  /** TUN packets of no flow; off-ramp packets of no flow or malformed. */
  unmatched: number;
  unmatchedReplies: number;
  tunRefused: number;
}

export class TcpDowngrader {
  readonly table: FlowTable;
  readonly stats: DowngraderStats = { toTun: 0, fromTun: 0, unmatched: 0, unmatchedReplies: 0, tunRefused: 0 };
  private readonly pool4: NatPool;
  private readonly pool6: NatPool;
  private readonly flows4 = new Map<number, Flow>();
  private readonly flows6 = new Map<number, Flow>();
  private readonly peer4 = parseAddress(V4_PEER);
  private readonly peer6 = parseAddress(V6_PEER);
  private readonly view = new PacketView();
  private readonly out: Buffer[] = [];
  private flushScheduled = false;
  private nextPort = 40000;
  private readonly flush = (): void => {
    this.flushScheduled = false;
    if (this.out.length === 0) return;
    writeAll(this.tun, this.out.splice(0, this.out.length), this.stats);
  };

  private constructor(
    readonly ns: UnnamedNetns,
    private readonly ownsNs: boolean,
    private readonly tun: Tun,
    options: DowngraderOptions,
  ) {
    this.pool4 = new NatPool({ base: '198.18.64.1', addresses: 16, maxSlots: options.maxSlots });
    this.pool6 = new NatPool({ base: '2001:db8:ff:64::1', addresses: 16, maxSlots: options.maxSlots });
    this.table = new FlowTable({
      hooks: options.hooks,
      timeouts: options.timeouts,
      release: (flow, reason) => this.release(flow, reason),
    });
    tun.on('packets', (batch) => this.fromTun(batch));
    tun.on('error', () => {});
  }

  static async create(options: DowngraderOptions = {}): Promise<TcpDowngrader> {
    const ns = options.ns ?? (await UnnamedNetns.create());
    const name = options.name ?? 'oxdn0';
    let tun: Tun | undefined;
    try {
      tun = await ns.openTun({ name, mtu: options.mtu ?? 65000, txQueueLength: options.txQueueLength ?? 5000, batchSize: options.batchSize ?? 128 });
      await ns.sysctl('net.ipv6.ip_nonlocal_bind', 1);
      await ns.ip([
        `link set ${name} addrgenmode none`,
        `link set ${name} up`,
        'addr add 198.18.64.0/18 dev lo',
        'route add local 2001:db8:ff:64::/64 dev lo',
        `route add 198.18.128.0/24 dev ${name}`,
        `route add 2001:db8:ff:128::/64 dev ${name}`,
      ]);
    } catch (err) {
      tun?.close();
      if (!options.ns) ns.close();
      throw err;
    }
    return new TcpDowngrader(ns, !options.ns, tun, options);
  }

  /** A session: the streams of one (tenant, vnet), whose packets go to `send`. */
  session(context: IpContext, send: (packet: Buffer, flow: Flow) => void): DowngradeSession {
    return new DowngradeSession(this, this.table.scope(context), send);
  }

  /** @internal */
  async connect(session: DowngradeSession, target: DowngradeTarget): Promise<net.Socket> {
    const src = parseAddress(target.src);
    const dst = parseAddress(target.dst);
    const srcPort = target.srcPort ?? this.ephemeralPort();
    const v4 = src.length === 4;
    const pool = v4 ? this.pool4 : this.pool6;
    this.table.clock();
    const refusal = this.table.admit(session.scope);
    if (refusal) throw new OxyError('OXY_ERR_DOWNGRADE_EXHAUSTED', `downgrade refused: ${refusal}`);
    const slot = pool.allocate();
    if (slot < 0) {
      this.table.refuse(session.scope, 'nat-exhausted');
      throw new OxyError('OXY_ERR_DOWNGRADE_EXHAUSTED', 'downgrade refused: NAT slots exhausted');
    }
    const flow = this.table.createFromTuple(session.scope, IpProtocol.TCP, src, srcPort, dst, target.dstPort);
    flow.slot = slot;
    flow.attachment = session;
    flow.decision = { verdict: 'forward' };
    (v4 ? this.flows4 : this.flows6).set(slot, flow);
    this.table.start(flow);
    try {
      const socket = await this.ns.connect({
        host: v4 ? V4_PEER : V6_PEER,
        port: PEER_PORT,
        localAddress: formatAddress(pool.address(slot)),
        localPort: pool.port(slot),
        timeoutMs: target.timeoutMs,
      });
      if (flow.ended) {
        socket.destroy();
        throw new OxyError('OXY_ERR_DOWNGRADE_EXHAUSTED', `downgraded flow ended before its socket arrived (${flow.endReason})`);
      }
      flow.handle = socket;
      socket.on('error', () => {});
      return socket;
    } catch (err) {
      this.table.end(flow, 'closed');
      throw err;
    }
  }

  private ephemeralPort(): number {
    const port = this.nextPort;
    this.nextPort = port >= 60999 ? 40000 : port + 1;
    return port;
  }

  private fromTun(batch: PacketBatch): void {
    const view = this.view;
    this.table.clock();
    for (let i = 0; i < batch.count; i++) {
      const parsed = parsePacket(batch.packet(i), view);
      if (!parsed.ok || view.transport !== TransportKind.Tcp) {
        this.stats.unmatched++;
        continue;
      }
      const v4 = view.version === 4;
      const slot = (v4 ? this.pool4 : this.pool6).slotOf(view.buf, view.srcOffset, view.srcPort);
      const flow = slot < 0 ? undefined : (v4 ? this.flows4 : this.flows6).get(slot);
      if (!flow) {
        this.stats.unmatched++;
        continue;
      }
      this.stats.fromTun++;
      rewriteSource(view, flow.src, flow.srcPort);
      rewriteDestination(view, flow.dst, flow.dstPort);
      flow.lastSeen = this.table.now;
      flow.packetsIn++;
      flow.bytesIn += view.length;
      const rst = flow.tcpFlags(view.tcpFlags, true, this.table.now);
      (flow.attachment as DowngradeSession).deliver(view.buf.subarray(0, view.length), flow);
      if (rst) this.table.end(flow, 'rst');
    }
  }

  /** @internal A packet from the off-ramp for one of `session`'s flows. */
  receive(session: DowngradeSession, packet: Buffer): void {
    const view = parsePacket(packet, this.view);
    if (!view.ok || view.transport !== TransportKind.Tcp) {
      this.stats.unmatchedReplies++;
      return;
    }
    const flow = this.table.lookup(session.scope, reverseFlowKey(view));
    if (!flow || flow.slot < 0) {
      this.stats.unmatchedReplies++;
      return;
    }
    const v4 = view.version === 4;
    const pool = v4 ? this.pool4 : this.pool6;
    rewriteSource(view, v4 ? this.peer4 : this.peer6, PEER_PORT);
    rewriteDestination(view, pool.address(flow.slot), pool.port(flow.slot));
    flow.lastSeen = this.table.now;
    flow.packetsOut++;
    flow.bytesOut += view.length;
    const rst = flow.tcpFlags(view.tcpFlags, false, this.table.now);
    this.out.push(view.length === packet.length ? packet : packet.subarray(0, view.length));
    this.stats.toTun++;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      soon(this.flush);
    }
    if (rst) {
      this.flush();
      this.table.end(flow, 'rst');
    }
  }

  private release(flow: Flow, reason: FlowEndReason): void {
    if (flow.slot >= 0) {
      const v4 = flow.version === 4;
      const flows = v4 ? this.flows4 : this.flows6;
      if (flows.get(flow.slot) === flow) {
        flows.delete(flow.slot);
        (v4 ? this.pool4 : this.pool6).release(flow.slot);
      }
      flow.slot = -1;
    }
    // After FIN or RST the kernel closes or resets the socket itself (the app sees 'end' or ECONNRESET).
    if (reason !== 'fin' && reason !== 'rst') (flow.handle as net.Socket | undefined)?.destroy();
  }

  /** @internal */
  endSession(session: DowngradeSession): void {
    for (const flow of [...this.table.flows()]) if (flow.attachment === session) this.table.end(flow, 'session-closed');
  }

  close(): void {
    this.table.close();
    this.flush();
    this.tun.close();
    if (this.ownsNs) this.ns.close();
  }
}

/** The downgraded streams of one (tenant, vnet) and their IP off-ramp. */
export class DowngradeSession {
  constructor(
    private readonly downgrader: TcpDowngrader,
    readonly scope: FlowScope,
    private readonly send: (packet: Buffer, flow: Flow) => void,
  ) {}

  /** A TCP stream that leaves as IP packets with the target's tuple (a connected socket to write to and read from). */
  connect(target: DowngradeTarget): Promise<net.Socket> {
    return this.downgrader.connect(this, target);
  }

  /** An IP packet from the off-ramp (a reply to one of this session's flows). */
  receive(packet: Buffer): void {
    this.downgrader.receive(this, packet);
  }

  /** @internal */
  deliver(packet: Buffer, flow: Flow): void {
    this.send(packet, flow);
  }

  /** Ends every flow of the session. */
  close(): void {
    this.downgrader.endSession(this);
  }
}
