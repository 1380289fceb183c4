/**
 * The tunnels connected to this edge right now: for each tunnel, its registered
 * connections. New streams go to the connection with the fewest active streams, so HA
 * connections share load and a dead one is skipped as soon as it closes — or, when its peer
 * died without a word (a SIGKILLed connector over QUIC), as soon as it leaves something
 * unanswered for LIVENESS_MS. A tunnel with no connection here is served through an edge that
 * holds one (forwarding.ts), when one is given.
 */
import type { TunnelConnection } from '../transport/types.js';

/** A connection that has left a probe or a new stream unanswered this long is not picked while another answers. */
export const LIVENESS_MS = 1000;

export interface LiveConnection {
  id: string;
  tunnelId: string;
  connectorId: string;
  connIndex: number;
  conn: TunnelConnection;
  /** Set when the connector announced it is draining: no new streams. */
  draining: boolean;
  /** The connector serves http1 streams (HTTP1_STREAM_FEATURE): one stream per client connection. */
  http1?: boolean;
  /** ... and takes chunked request bodies on them (HTTP1_CHUNKED_FEATURE). */
  http1Chunked?: boolean;
  /** The connector serves tcp-flows streams (TCP_FLOWS_FEATURE): private TCP flows on reused streams. */
  tcpFlows?: boolean;
  /** Of its open streams, tcp-flows streams idle between flows (edge/tcp-flows.ts): not load, and cheaper for the next flow. */
  idleStreams?: number;
  /** Called once when the connector announces it is draining (idle http1 streams end then). */
  onDrain?: Set<() => void>;
  /** Asked whether it is alive (a sibling registered) and not answered yet: picked only when no other is ready. */
  probing?: boolean;
  /** Set on a peer edge's link (forwarding): the edge whose connection serves the streams. */
  via?: { edgeId: string; location: string };
}

/** Where streams of a tunnel with no local connection go (forwarding.ts). */
export interface Forwarder {
  pick(tunnelId: string): LiveConnection | undefined;
}

export class TunnelRegistry {
  readonly #byTunnel = new Map<string, Set<LiveConnection>>();

  constructor(private readonly forwarder?: Forwarder) {}

  add(live: LiveConnection): void {
    let set = this.#byTunnel.get(live.tunnelId);
    if (!set) this.#byTunnel.set(live.tunnelId, (set = new Set()));
    set.add(live);
  }

  remove(live: LiveConnection): void {
    const set = this.#byTunnel.get(live.tunnelId);
    set?.delete(live);
    if (set?.size === 0) this.#byTunnel.delete(live.tunnelId);
  }

  /** A connection to open a stream on: this edge's own, else a peer edge that holds one; undefined when none is ready. */
  pick(tunnelId: string): LiveConnection | undefined {
    return this.pickLocal(tunnelId) ?? this.forwarder?.pick(tunnelId);
  }

  /**
   * One of this edge's own connections of the tunnel (a forwarded stream goes only there: one
   * hop, no loop); `http1`: only one whose connector serves http1 streams.
   */
  pickLocal(tunnelId: string, http1 = false): LiveConnection | undefined {
    let best: LiveConnection | undefined;
    let bestRank = Infinity;
    for (const live of this.#byTunnel.get(tunnelId) ?? []) {
      if (live.draining || live.conn.isClosed || (http1 && !live.http1)) continue;
      // Silent connections rank after every answering one (but are still used when none answers).
      // Idle tcp-flows streams are not load; with them, a connection wins a tie (its next flow opens no stream).
      const idle = live.idleStreams ? live.idleStreams + 0.5 : 0;
      const rank = live.conn.stats().activeStreams - idle + (live.conn.unansweredMs() > LIVENESS_MS ? 2e9 : live.probing ? 1e9 : 0);
      if (rank < bestRank) [best, bestRank] = [live, rank];
    }
    return best;
  }

  /** Another connection of the same connector and index: the connector redialled it, so this one is stale. */
  superseded(live: LiveConnection): LiveConnection[] {
    return this.connections(live.tunnelId).filter((c) => c !== live && c.connectorId === live.connectorId && c.connIndex === live.connIndex);
  }

  connections(tunnelId?: string): LiveConnection[] {
    if (tunnelId) return [...(this.#byTunnel.get(tunnelId) ?? [])];
    return [...this.#byTunnel.values()].flatMap((s) => [...s]);
  }

  get size(): number {
    let n = 0;
    for (const s of this.#byTunnel.values()) n += s.size;
    return n;
  }
}
