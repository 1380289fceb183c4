/**
 * Types shared by the flow table, the NAT and the IP edge.
 *
 * A flow is identified by its signature: the scope it arrived in (tenant, vnet) plus
 * its 5-tuple (protocol, src, dst, src port, dst port; for ICMP echo both "ports" are
 * the identifier). The same 5-tuple in two scopes is two flows.
 */

/**
 * What an on-ramp knows about the traffic it carries: at least the tenant (account)
 * and the vnet; anything else is the application's (parsed from the SEQPACKET context
 * JSON or the GUE private data) and is passed through untouched.
 */
export interface IpContext {
  tenant: string;
  /**
   * Virtual network: its ID once the edge's on-ramp resolved it (flows are keyed by it);
   * '' means the tenant's default where nothing resolves (bare IpEdge uses).
   */
  vnet: string;
  /** The vnet's name, for hooks and logs (set by the on-ramp that resolved `vnet`). */
  vnetName?: string;
  /**
   * Packets a `downgrade` egress put back into the edge's own IP network (the vnet
   * off-ramp): their flows live in a scope of their own, apart from the client flows they
   * carry the tuples of, and the IP-flow hooks do not see them again.
   */
  reentry?: boolean;
  [field: string]: unknown;
}

/**
 * What happens to a new flow, decided once from its first packet and memoized:
 * - `upgrade`: TCP through the NAT into the namespace's kernel (an ordinary socket
 *   for `onTcpStream`), UDP datagrams to `onUdpFlow`, ICMP echo answered locally.
 * - `forward`: every packet, as IP, to the IP off-ramp (`onIpPacket`).
 * - `drop`: packets are counted and dropped.
 * - `reject`: like drop, but the client is told: TCP RST for TCP, nothing otherwise.
 */
export type FlowVerdict = 'upgrade' | 'forward' | 'drop' | 'reject';

export interface FlowDecision<R = unknown> {
  verdict: FlowVerdict;
  /** Application data kept on the flow (e.g. the route/tunnel chosen); never read by the engine. */
  route?: R;
}

/** Why a flow ended; stable strings for logs and counters. */
export type FlowEndReason =
  /** Both sides sent FIN (TCP). */
  | 'fin'
  /** Either side sent RST (TCP). */
  | 'rst'
  /** No packet in either direction for the protocol's idle timeout. */
  | 'idle'
  /** The upgraded socket or UDP handle was closed by the application. */
  | 'closed'
  /** The on-ramp connection that carried it went away. */
  | 'session-closed'
  /** The edge (or table) shut down. */
  | 'shutdown';

/** Why a new flow was not created; stable strings, also the counter names. */
export type FlowRefusal = 'global-limit' | 'tenant-limit' | 'session-limit' | 'nat-exhausted';
