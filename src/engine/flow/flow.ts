import { TcpFlag, describeFlowKey, type FlowKey } from '../packet/index.js';
import type { FlowDecision, FlowEndReason, IpContext } from './types.js';

let nextFlowId = 1;

/** Every flow's decision until the table's owner decided it: one object for all (decisions are replaced, never changed). */
const UNDECIDED: FlowDecision<never> = Object.freeze({ verdict: 'drop' });

/** One flow in a {@link FlowTable}. Fields are public for the edge's hot path; treat them as read-only elsewhere. */
export class Flow<R = unknown> {
  readonly id = nextFlowId++;
  /** Set by the table right after the first packet was decided. */
  decision: FlowDecision<R> = UNDECIDED;
  readonly startedAt: number;
  /** Coarse clock (ms) of the last packet either way. */
  lastSeen: number;
  endedAt = 0;
  endReason: FlowEndReason | undefined;

  /** Client → edge (the direction of the first packet). */
  packetsIn = 0;
  bytesIn = 0;
  /** Edge → client. */
  packetsOut = 0;
  bytesOut = 0;

  /** TCP: FIN seen from the client / towards the client; closing once both are. */
  finIn = false;
  finOut = false;
  /** When both FINs were seen (coarse ms); 0 while open. */
  closingSince = 0;
  /**
   * TCP: the owner has a connection for it (the upgraded socket was accepted). Until
   * then the shorter handshake timeout applies, so half-open flows do not hold NAT
   * slots for the whole idle timeout. Flows that need no handshake start true.
   */
  established = true;

  /** Owner-defined state (the NAT slot, the upgraded socket, the on-ramp session…). */
  slot = -1;
  /**
   * The flow's id in the upgrader's native fast path (-1: none). While set, most of its packets
   * bypass JS: its counters and lastSeen are brought up to date at each sweep and at its end.
   */
  fastId = -1;
  /** The on-ramp session that carries the client's packets. */
  attachment: unknown = undefined;
  /** @internal Counted in its on-ramp session's `flows` (the IP edge's limit per session). */
  inSession = false;
  /** The upgraded socket or UDP handle, if any. */
  handle: unknown = undefined;

  constructor(
    readonly scope: FlowScope,
    readonly key: FlowKey,
    readonly version: 4 | 6,
    readonly protocol: number,
    /** Client address and port (copies, never views into a packet). */
    readonly src: Buffer,
    readonly srcPort: number,
    readonly dst: Buffer,
    readonly dstPort: number,
    now: number,
  ) {
    this.startedAt = now;
    this.lastSeen = now;
  }

  get tenant(): string {
    return this.scope.context.tenant;
  }

  get vnet(): string {
    return this.scope.context.vnet;
  }

  get ended(): boolean {
    return this.endReason !== undefined;
  }

  /** `tcp 198.18.0.1:40000 > 198.18.2.3:80 [tenant/vnet]` */
  toString(): string {
    return `${describeFlowKey(this.key)} [${this.scope.context.tenant}/${this.scope.context.vnet}]`;
  }

  /** @internal Accounts one TCP packet's flags; returns true when the flow must end now (RST). */
  tcpFlags(flags: number, fromClient: boolean, now: number): boolean {
    // After both FINs a bare RST (no ACK) is a socket already closed answering a stray segment
    // (a retransmission that crossed the close): the close was graceful and lingers on. An abort
    // (close with unread data) carries ACK and still ends the flow as 'rst'.
    if (flags & TcpFlag.RST) return this.closingSince === 0 || (flags & TcpFlag.ACK) !== 0;
    if (flags & TcpFlag.FIN) {
      if (fromClient) this.finIn = true;
      else this.finOut = true;
      if (this.finIn && this.finOut && this.closingSince === 0) this.closingSince = now;
    }
    return false;
  }
}

/** The flows of one (tenant, vnet): what a flow key is looked up in. */
export class FlowScope {
  readonly flows = new Map<FlowKey, Flow>();

  constructor(
    /** The context of the first session that used the scope (tenant and vnet are what matter). */
    readonly context: IpContext,
    /** @internal */
    readonly tenantState: TenantState,
  ) {}
}

/** @internal Per-tenant counters for the limits. */
export class TenantState {
  flows = 0;
  refused = 0;
  /** Bytes its pending IP fragments hold (see reassembly.ts). */
  fragmentBytes = 0;
  constructor(readonly tenant: string) {}
}
