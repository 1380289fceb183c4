/**
 * The tunnels connected to this edge right now: for each tunnel, its registered
 * connections. New streams spread over the tunnel's connectors (the fewest active streams)
 * and pack onto one connection of each (pickLocal); a dead one is skipped as soon as it
 * closes — or, when its peer died without a word (a SIGKILLed connector over QUIC), as soon
 * as it leaves something unanswered for LIVENESS_MS. A tunnel with no connection here is served through an edge that
 * holds one (forwarding.ts), when one is given.
 */
import type { TunnelConnection } from '../transport/types.js';

/** A connection that has left a probe or a new stream unanswered this long is not picked while another answers. */
export const LIVENESS_MS = 1000;
/** Streams one connection of a connector takes before the next one gets any (pickLocal). */
export const PACK_STREAMS = 64;

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
   * Whether pick() would find a connection now, without ranking them: pickLocal returns one
   * whenever any of the tunnel's own is neither draining nor closed (its tiers only order them).
   * For a new flow's decision, which a second pick at its accept places (once per flow less).
   */
  canPick(tunnelId: string): boolean {
    const set = this.#byTunnel.get(tunnelId);
    if (set) for (const live of set) if (!live.draining && !live.conn.isClosed) return true;
    return this.forwarder?.pick(tunnelId) !== undefined;
  }

  /**
   * One of this edge's own connections of the tunnel (a forwarded stream goes only there: one
   * hop, no loop); `http1`: only one whose connector serves http1 streams.
   *
   * Answering connections first (a silent one ranks after every answering one, a probing one
   * in between, but either is still used when none answers). Among them, streams spread over the
   * tunnel's connectors (the one with the fewest) and pack within a connector: its connections
   * to this edge all end in the same two event loops, so spreading over them buys nothing and
   * costs packets (each turn's stream data leaves in one packet per connection instead of one in
   * all). A connection takes PACK_STREAMS before the next one (by index) gets any; past that,
   * the fewest. Idle tcp-flows streams are not load, and a connection holding one wins (its
   * next flow opens no stream).
   */
  pickLocal(tunnelId: string, http1 = false): LiveConnection | undefined {
    const set = this.#byTunnel.get(tunnelId);
    if (!set) return undefined;
    // Runs for every new stream and private flow (twice per new TCP flow): no object per
    // connection, and the per-connector sums only when the tier holds more than one connector.
    const ready: LiveConnection[] = [];
    const active: number[] = [];
    let bestTier = Infinity;
    let connectors = 0;
    let first = '';
    for (const live of set) {
      if (live.draining || live.conn.isClosed || (http1 && !live.http1)) continue;
      const tier = live.conn.unansweredMs() > LIVENESS_MS ? 2 : live.probing ? 1 : 0;
      if (tier > bestTier) continue;
      if (tier < bestTier) {
        bestTier = tier;
        ready.length = active.length = connectors = 0;
      }
      if (connectors === 0) {
        first = live.connectorId;
        connectors = 1;
      } else if (connectors === 1 && live.connectorId !== first) connectors = 2;
      ready.push(live);
      active.push(live.conn.activeStreams() - (live.idleStreams ?? 0));
    }
    if (ready.length <= 1) return ready[0];
    let connector = first;
    if (connectors > 1) {
      const load = new Map<string, number>();
      for (let i = 0; i < ready.length; i++) load.set(ready[i]!.connectorId, (load.get(ready[i]!.connectorId) ?? 0) + active[i]!);
      let least = Infinity;
      for (const [id, n] of load) if (n < least) [connector, least] = [id, n];
    }
    let best: LiveConnection | undefined;
    let bestRank = Infinity;
    for (let i = 0; i < ready.length; i++) {
      const live = ready[i]!;
      if (live.connectorId !== connector) continue;
      const n = active[i]!;
      const rank = live.idleStreams ? n - 1e6 : n < PACK_STREAMS ? live.connIndex - 1e3 : n;
      if (rank < bestRank) {
        best = live;
        bestRank = rank;
      }
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
