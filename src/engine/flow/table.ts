/**
 * The flow table: finds the flow of each packet by (scope, 5-tuple), creates flows
 * within the global and per-tenant limits, keeps per-flow counters, ends TCP flows on
 * FIN/RST and every flow on idle timeout, and is the ONE place flow start and end are
 * reported (`onFlowStart` / `onFlowEnd`: what the hooks layer will expose).
 *
 * Per packet the table costs one Map lookup plus a few field writes: the clock is
 * coarse (`clock()` once per batch), and idle flows are found by a periodic sweep
 * (`sweepIntervalMs`, O(flows) each time; ~1 ms per 100k flows) rather than timers.
 *
 * Order of events for one flow: decide (owner) → onFlowStart → packets… →
 * release (owner: NAT slot, socket) → onFlowEnd. A refused flow fires neither event;
 * it only counts in `stats.refused[reason]` (and the tenant's `refused`).
 */
import { IpProtocol, flowKeyOf, type FlowKey, type PacketView } from '../packet/index.js';
import { Flow, FlowScope, TenantState } from './flow.js';
import type { FlowEndReason, FlowRefusal, IpContext } from './types.js';

export interface FlowHooks<R = unknown> {
  /** A flow was admitted and decided; its first packet is processed right after. */
  onFlowStart?(flow: Flow<R>): void;
  /** A flow ended; its counters are final. */
  onFlowEnd?(flow: Flow<R>, reason: FlowEndReason): void;
}

export interface FlowLimits {
  /** Most concurrent flows in the table. Default 1,000,000. */
  maxFlows?: number;
  /** Most concurrent flows per tenant. Default: no limit beyond maxFlows. */
  maxFlowsPerTenant?: number;
  /**
   * Most concurrent flows per on-ramp session (one device connection, one GUE sender), so one
   * client cannot take every stream of the connectors (each private flow holds one). Counted
   * by the IP edge. Default: no limit beyond the others.
   */
  maxFlowsPerSession?: number;
}

export interface FlowTimeouts {
  /** TCP idle timeout (ms). Default 300,000 (the kernel keeps its own timers behind the NAT). */
  tcpIdleMs?: number;
  /** UDP idle timeout (ms). Default 30,000. */
  udpIdleMs?: number;
  /** ICMP and other protocols (ms). Default 10,000. */
  otherIdleMs?: number;
  /** TCP flows not yet established (see Flow.established) end after this long (ms). Default 20,000. */
  tcpHandshakeMs?: number;
  /** After both FINs, the flow lingers this long for the last ACKs, then ends with 'fin'. Default 1,000. */
  tcpCloseLingerMs?: number;
}

export interface FlowTableOptions<R> {
  limits?: FlowLimits;
  timeouts?: FlowTimeouts;
  hooks?: FlowHooks<R>;
  /** Called for every ending flow before onFlowEnd: the owner frees what it attached (NAT slot, socket). */
  release?(flow: Flow<R>, reason: FlowEndReason): void;
  /** How often idle and closing flows are looked for. Default: a quarter of the shortest timeout, 50 ms–1 s. */
  sweepIntervalMs?: number;
  /** Called before each sweep: an owner that counts packets elsewhere (the fast path) brings lastSeen up to date. */
  refresh?(): void;
}

export interface FlowTableStats {
  active: number;
  started: number;
  ended: number;
  endedBy: Record<FlowEndReason, number>;
  refused: Record<FlowRefusal, number>;
}

export class FlowTable<R = unknown> {
  /** Coarse clock in ms, advanced by clock() and by the sweep. */
  now = Date.now();
  readonly stats: FlowTableStats = {
    active: 0,
    started: 0,
    ended: 0,
    endedBy: { fin: 0, rst: 0, idle: 0, closed: 0, 'session-closed': 0, shutdown: 0 },
    refused: { 'global-limit': 0, 'tenant-limit': 0, 'session-limit': 0, 'nat-exhausted': 0 },
  };
  readonly maxFlows: number;
  readonly maxFlowsPerTenant: number;
  readonly maxFlowsPerSession: number;
  readonly tcpIdleMs: number;
  readonly udpIdleMs: number;
  readonly otherIdleMs: number;
  readonly tcpCloseLingerMs: number;
  readonly tcpHandshakeMs: number;
  private readonly scopes = new Map<string, FlowScope>();
  private readonly tenants = new Map<string, TenantState>();
  private readonly hooks: FlowHooks<R>;
  private readonly release: ((flow: Flow<R>, reason: FlowEndReason) => void) | undefined;
  private readonly refresh: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(options: FlowTableOptions<R> = {}) {
    this.maxFlows = options.limits?.maxFlows ?? 1_000_000;
    this.maxFlowsPerTenant = options.limits?.maxFlowsPerTenant ?? Infinity;
    this.maxFlowsPerSession = options.limits?.maxFlowsPerSession ?? Infinity;
    this.tcpIdleMs = options.timeouts?.tcpIdleMs ?? 300_000;
    this.udpIdleMs = options.timeouts?.udpIdleMs ?? 30_000;
    this.otherIdleMs = options.timeouts?.otherIdleMs ?? 10_000;
    this.tcpCloseLingerMs = options.timeouts?.tcpCloseLingerMs ?? 1_000;
    this.tcpHandshakeMs = options.timeouts?.tcpHandshakeMs ?? 20_000;
    this.hooks = options.hooks ?? {};
    this.release = options.release;
    this.refresh = options.refresh;
    const shortest = Math.min(this.tcpIdleMs, this.udpIdleMs, this.otherIdleMs, this.tcpCloseLingerMs, this.tcpHandshakeMs);
    const interval = options.sweepIntervalMs ?? Math.min(1000, Math.max(50, shortest / 4));
    this.timer = setInterval(() => this.sweep(), interval);
    this.timer.unref();
  }

  /** Advances the coarse clock; call once per batch of packets. */
  clock(): number {
    return (this.now = Date.now());
  }

  /** The scope for a context: interned by (tenant, vnet, reentry), so sessions of the same vnet share flows. */
  scope(context: IpContext): FlowScope {
    const name = `${context.tenant}\u0000${context.vnet}${context.reentry ? '\u0000reentry' : ''}`;
    let scope = this.scopes.get(name);
    if (!scope) {
      let tenant = this.tenants.get(context.tenant);
      if (!tenant) {
        tenant = new TenantState(context.tenant);
        this.tenants.set(context.tenant, tenant);
      }
      scope = new FlowScope(context, tenant);
      this.scopes.set(name, scope);
    }
    return scope;
  }

  /** Active flows per scope (tenant, vnet as the sessions named it), for the dashboard. */
  activeByScope(): { context: IpContext; flows: number }[] {
    return [...this.scopes.values()].map((s) => ({ context: s.context, flows: s.flows.size }));
  }

  /** Flows of a tenant now, and how many it had refused. */
  tenantStats(tenant: string): { flows: number; refused: number } {
    const state = this.tenants.get(tenant);
    return { flows: state?.flows ?? 0, refused: state?.refused ?? 0 };
  }

  lookup(scope: FlowScope, key: FlowKey): Flow<R> | undefined {
    return scope.flows.get(key) as Flow<R> | undefined;
  }

  /**
   * Whether a new flow may start in `scope`: undefined, or the limit it hits (counted).
   * Call before creating it.
   */
  admit(scope: FlowScope): FlowRefusal | undefined {
    if (this.stats.active >= this.maxFlows) return this.refuse(scope, 'global-limit');
    if (scope.tenantState.flows >= this.maxFlowsPerTenant) return this.refuse(scope, 'tenant-limit');
    return undefined;
  }

  /** Counts a refusal (the owner's own, e.g. 'nat-exhausted'); returns it. */
  refuse(scope: FlowScope, reason: FlowRefusal): FlowRefusal {
    this.stats.refused[reason]++;
    scope.tenantState.refused++;
    return reason;
  }

  /** A flow for the packet's 5-tuple, not yet in the table: decide it, then start() it. */
  create(scope: FlowScope, key: FlowKey, view: PacketView): Flow<R> {
    const length = view.addressLength;
    const src = copyOf(view.buf, view.srcOffset, length);
    const dst = copyOf(view.buf, view.dstOffset, length);
    return new Flow<R>(scope, key, view.version, view.protocol, src, view.srcPort, dst, view.dstPort, this.now);
  }

  /** A flow for a tuple held outside a packet (a downgraded stream), not yet in the table. */
  createFromTuple(scope: FlowScope, protocol: number, src: Buffer, srcPort: number, dst: Buffer, dstPort: number): Flow<R> {
    const key = flowKeyOf(protocol, src, dst, srcPort, dstPort);
    return new Flow<R>(scope, key, src.length === 4 ? 4 : 6, protocol, Buffer.from(src), srcPort, Buffer.from(dst), dstPort, this.now);
  }

  /** Puts a decided flow in the table and reports its start. */
  start(flow: Flow<R>): void {
    flow.scope.flows.set(flow.key, flow);
    flow.scope.tenantState.flows++;
    this.stats.active++;
    this.stats.started++;
    this.hooks.onFlowStart?.(flow);
  }

  /** Ends a flow (idempotent): removes it, lets the owner release it, reports the end. */
  end(flow: Flow<R>, reason: FlowEndReason): void {
    if (flow.endReason !== undefined) return;
    flow.endReason = reason;
    flow.endedAt = this.now;
    if (flow.scope.flows.get(flow.key) === flow) {
      flow.scope.flows.delete(flow.key);
      flow.scope.tenantState.flows--;
      this.stats.active--;
    }
    this.stats.ended++;
    this.stats.endedBy[reason]++;
    try {
      this.release?.(flow, reason);
    } finally {
      this.hooks.onFlowEnd?.(flow, reason);
    }
  }

  /** Ends idle flows and TCP flows whose close linger is over. Runs by itself; public for tests. */
  sweep(now = this.clock()): number {
    this.refresh?.();
    let ended = 0;
    for (const scope of this.scopes.values()) {
      for (const flow of scope.flows.values()) {
        const f = flow as Flow<R>;
        if (f.closingSince !== 0 && now - f.closingSince >= this.tcpCloseLingerMs) {
          this.end(f, 'fin');
          ended++;
        } else if (now - f.lastSeen >= this.idleTimeout(f.protocol) || (!f.established && now - f.startedAt >= this.tcpHandshakeMs)) {
          this.end(f, 'idle');
          ended++;
        }
      }
    }
    return ended;
  }

  idleTimeout(protocol: number): number {
    return protocol === IpProtocol.TCP ? this.tcpIdleMs : protocol === IpProtocol.UDP ? this.udpIdleMs : this.otherIdleMs;
  }

  /** Every live flow (for tests, debugging and session teardown). */
  *flows(): IterableIterator<Flow<R>> {
    for (const scope of this.scopes.values()) yield* scope.flows.values() as IterableIterator<Flow<R>>;
  }

  /** Ends every flow ('shutdown') and stops the sweep. */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    for (const flow of [...this.flows()]) this.end(flow, 'shutdown');
  }
}

/**
 * `length` bytes of `buf` from `offset`, copied: one (pooled) Buffer per address of a new flow, where
 * Buffer.from(view.src) made a view first and copied through it.
 */
function copyOf(buf: Buffer, offset: number, length: number): Buffer {
  const copy = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) copy[i] = buf[offset + i]!;
  return copy;
}
