import { bytewise, type Sql } from './sql.js';

/** A running edge as it records itself (`oxyctl edge list`). */
export interface EdgeRecord {
  id: string;
  location: string;
  /** Where its tunnel listener is (HOST:PORT). */
  tunnelAddress: string;
  startedAt: string;
  heartbeatAt: string;
  /** The edge process group it belongs to: the primary's id for a worker of `edge run --workers N`, else its own id; unset: none (rows written before groups). */
  groupId?: string;
}

export interface LiveEdge extends EdgeRecord {
  /** Tunnel connections it holds. */
  connections: number;
}

/**
 * How often a running edge renews its heartbeat; an edge whose heartbeat is older than
 * EDGE_TTL_MS is dead, and its connections are no longer shown. OXY_EDGE_HEARTBEAT_MS
 * shortens it (tests that kill an edge).
 */
export const EDGE_HEARTBEAT_MS = Number(process.env.OXY_EDGE_HEARTBEAT_MS) || 5000;
export const EDGE_TTL_MS = 3 * EDGE_HEARTBEAT_MS;
/** A dead edge's row and its connections are deleted (by any live edge) after this long. */
export const EDGE_FORGET_MS = 60 * 60_000;

/** The oldest heartbeat of a live edge, as of now. */
export const liveSince = (now = Date.now()): string => new Date(now - EDGE_TTL_MS).toISOString();

/** The SQL condition of a connection held by a live edge (or recorded without an edge id). */
export const LIVE_CONNECTION = '(edge_id IS NULL OR edge_id IN (SELECT id FROM edges WHERE heartbeat_at >= @liveSince))';

/** The writes a running edge makes about itself (named parameters, both backends). */
export const EDGE_WRITES = {
  /** Records the edge, or renews its heartbeat (re-creating a row someone removed). */
  edge: `INSERT INTO edges (id, location, tunnel_address, started_at, heartbeat_at, group_id)
     VALUES (@id, @location, @tunnelAddress, @startedAt, @heartbeatAt, @groupId)
     ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, tunnel_address = excluded.tunnel_address`,
  /** A stopping edge (it forgot its connections one by one before). */
  edgeDown: 'DELETE FROM edges WHERE id = @id',
  /** Edges dead since before @before: their connections, then their rows. */
  pruneConnections: 'DELETE FROM tunnel_connections WHERE edge_id IN (SELECT id FROM edges WHERE heartbeat_at < @before)',
  pruneEdges: 'DELETE FROM edges WHERE heartbeat_at < @before',
} as const;

/** A live edge holding at least one connection of a tunnel: where another edge forwards its traffic. */
export interface TunnelHolder {
  tunnelId: string;
  edgeId: string;
  location: string;
  tunnelAddress: string;
}

interface EdgeDbRow {
  id: string;
  location: string;
  tunnel_address: string;
  started_at: string;
  heartbeat_at: string;
  group_id: string | null;
  connections: number;
}

export class EdgeRepository {
  constructor(private readonly sql: Sql) {}

  async record(e: EdgeRecord): Promise<void> {
    await this.sql.run(EDGE_WRITES.edge, { ...e, groupId: e.groupId ?? null });
  }

  async remove(id: string): Promise<void> {
    await this.sql.run(EDGE_WRITES.edgeDown, { id });
  }

  /** Forgets edges whose last heartbeat is older than `before`, with their connections; returns how many edges. */
  async prune(before: string): Promise<number> {
    await this.sql.run(EDGE_WRITES.pruneConnections, { before });
    return this.sql.run(EDGE_WRITES.pruneEdges, { before });
  }

  /** Which live edges hold connections of which tunnels (the edges' in-memory view, for forwarding). */
  async holders(since = liveSince()): Promise<TunnelHolder[]> {
    const rows = await this.sql.all<{ tunnel_id: string; edge_id: string; location: string; tunnel_address: string }>(
      `SELECT DISTINCT c.tunnel_id, e.id AS edge_id, e.location, e.tunnel_address
        FROM tunnel_connections c JOIN edges e ON e.id = c.edge_id WHERE e.heartbeat_at >= @since`,
      { since },
    );
    return rows.map((r) => ({ tunnelId: r.tunnel_id, edgeId: r.edge_id, location: r.location, tunnelAddress: r.tunnel_address }));
  }

  /** Edges whose heartbeat is fresh, with the connections each holds. */
  async live(since = liveSince()): Promise<LiveEdge[]> {
    const rows = await this.sql.all<EdgeDbRow>(
      `SELECT e.id, e.location, e.tunnel_address, e.started_at, e.heartbeat_at, e.group_id,
          CAST((SELECT count(*) FROM tunnel_connections c WHERE c.edge_id = e.id) AS INTEGER) AS connections
        FROM edges e WHERE e.heartbeat_at >= @since
        ORDER BY ${bytewise(this.sql, 'e.location')}, e.started_at`,
      { since },
    );
    return rows.map((r) => ({
      id: r.id,
      location: r.location,
      tunnelAddress: r.tunnel_address,
      startedAt: r.started_at,
      heartbeatAt: r.heartbeat_at,
      ...(r.group_id === null ? {} : { groupId: r.group_id }),
      connections: r.connections,
    }));
  }
}
