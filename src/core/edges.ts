/** The edges sharing this store (`oxyctl edge list`): those whose heartbeat is fresh. */
import type { LiveEdge, Store } from '../store/index.js';

export interface EdgeDocument {
  id: string;
  location: string;
  tunnel_address: string;
  started_at: string;
  heartbeat_at: string;
  connections: number;
}

const edgeDocument = (e: LiveEdge): EdgeDocument => ({
  id: e.id,
  location: e.location,
  tunnel_address: e.tunnelAddress,
  started_at: e.startedAt,
  heartbeat_at: e.heartbeatAt,
  connections: e.connections,
});

export async function listEdges(store: Store): Promise<EdgeDocument[]> {
  return (await store.edges.live()).map(edgeDocument);
}

/** The tunnel addresses of every live edge, comma-separated (a token's `e`), else `fallback` (this host's edge). */
export async function edgeEndpoints(store: Store, fallback?: string): Promise<string | undefined> {
  const live = [...new Set((await listEdges(store)).map((e) => e.tunnel_address).filter(Boolean))].join(',');
  return live || fallback;
}
