/**
 * The tunnels connected to this edge right now: for each tunnel, its registered
 * connections. New streams go to the connection with the fewest active streams, so HA
 * connections share load and a dead one is skipped as soon as it closes.
 */
import type { TunnelConnection } from '../transport/types.js';

export interface LiveConnection {
  id: string;
  tunnelId: string;
  connectorId: string;
  connIndex: number;
  conn: TunnelConnection;
  /** Set when the connector announced it is draining: no new streams. */
  draining: boolean;
}

export class TunnelRegistry {
  readonly #byTunnel = new Map<string, Set<LiveConnection>>();

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

  /** A connection to open a stream on, or undefined when the tunnel has none ready. */
  pick(tunnelId: string): LiveConnection | undefined {
    let best: LiveConnection | undefined;
    for (const live of this.#byTunnel.get(tunnelId) ?? []) {
      if (live.draining || live.conn.isClosed) continue;
      if (!best || live.conn.stats().activeStreams < best.conn.stats().activeStreams) best = live;
    }
    return best;
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
