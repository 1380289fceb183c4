/** The edges sharing this store (`oxyctl edge list`): those whose heartbeat is fresh. */
import type { LiveEdge, Store } from '../store/index.js';

/** One process of an edge (a worker of `edge run --workers N`, or the edge itself). */
export interface EdgeWorkerDocument {
  id: string;
  connections: number;
}

/**
 * An edge the user started: its processes' rows of the edge registry grouped by their
 * group id (rows written before groups stay one edge each). `id`: the group's; started:
 * the earliest; heartbeat: the latest; connections: the sum over its workers.
 */
export interface EdgeDocument {
  id: string;
  location: string;
  tunnel_address: string;
  started_at: string;
  heartbeat_at: string;
  connections: number;
  workers: EdgeWorkerDocument[];
}

export async function listEdges(store: Store): Promise<EdgeDocument[]> {
  const groups = new Map<string, LiveEdge[]>();
  // Rows come ordered by location, then start: a group takes the place of its first row.
  for (const e of await store.edges.live()) {
    const key = e.groupId ?? `row:${e.id}`;
    groups.set(key, [...(groups.get(key) ?? []), e]);
  }
  return [...groups.values()].map((rows) => {
    const first = rows[0]!;
    return {
      id: first.groupId ?? first.id,
      location: first.location,
      tunnel_address: first.tunnelAddress,
      started_at: rows.map((e) => e.startedAt).sort()[0]!, // ISO times sort as text
      heartbeat_at: rows
        .map((e) => e.heartbeatAt)
        .sort()
        .at(-1)!,
      connections: rows.reduce((n, e) => n + e.connections, 0),
      workers: rows.map((e) => ({ id: e.id, connections: e.connections })),
    };
  });
}

/** The tunnel addresses of every live edge, comma-separated (a token's `e`), else `fallback` (this host's edge). */
export async function edgeEndpoints(store: Store, fallback?: string): Promise<string | undefined> {
  const live = [...new Set((await listEdges(store)).map((e) => e.tunnel_address).filter(Boolean))].join(',');
  return live || fallback;
}
