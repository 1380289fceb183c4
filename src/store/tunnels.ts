import { LIVE_CONNECTION, liveSince } from './edges.js';
import { insertionOrder, type Sql } from './sql.js';

export interface Tunnel {
  id: string;
  name: string;
  /** base64 of the tunnel secret (>= 32 bytes). */
  secret: string;
  createdAt: string;
  deletedAt: string | null;
}

export interface TunnelConnection {
  id: string;
  tunnelId: string;
  connectorId: string;
  connIndex: number;
  protocol: string;
  originIp: string;
  edgeLocation: string;
  clientVersion: string;
  arch: string;
  openedAt: string;
  /** The edge holding it (edges table); unset for rows written before edges recorded themselves. */
  edgeId?: string | null;
}

export interface TunnelFilter {
  id?: string;
  name?: string;
  namePrefix?: string;
  excludeNamePrefix?: string;
  showDeleted?: boolean;
}

interface TunnelDbRow {
  id: string;
  name: string;
  secret: string;
  created_at: string;
  deleted_at: string | null;
}

interface ConnectionDbRow {
  id: string;
  tunnel_id: string;
  connector_id: string;
  conn_index: number;
  protocol: string;
  origin_ip: string;
  edge_location: string;
  client_version: string;
  arch: string;
  opened_at: string;
  edge_id?: string | null;
}

const toTunnel = (r: TunnelDbRow): Tunnel => ({
  id: r.id,
  name: r.name,
  secret: r.secret,
  createdAt: r.created_at,
  deletedAt: r.deleted_at,
});

const toConnection = (r: ConnectionDbRow): TunnelConnection => ({
  id: r.id,
  tunnelId: r.tunnel_id,
  connectorId: r.connector_id,
  connIndex: r.conn_index,
  protocol: r.protocol,
  originIp: r.origin_ip,
  edgeLocation: r.edge_location,
  clientVersion: r.client_version,
  arch: r.arch,
  openedAt: r.opened_at,
  edgeId: r.edge_id ?? null,
});

/**
 * The writes a running edge makes to record its live connections (named parameters; SQL
 * both backends take). The SQLite edge runs them in its background writer
 * (engine/edge/store-writer.ts) on a connection of its own off the event loop; on PostgreSQL
 * they are plain async queries.
 */
export const CONNECTION_WRITES = {
  record: `INSERT INTO tunnel_connections
     (id, tunnel_id, connector_id, conn_index, protocol, origin_ip, edge_location, client_version, arch, opened_at, edge_id)
   VALUES (@id, @tunnelId, @connectorId, @connIndex, @protocol, @originIp, @edgeLocation, @clientVersion, @arch, @openedAt, @edgeId)
   ON CONFLICT (id) DO UPDATE SET tunnel_id = excluded.tunnel_id, connector_id = excluded.connector_id,
     conn_index = excluded.conn_index, protocol = excluded.protocol, origin_ip = excluded.origin_ip,
     edge_location = excluded.edge_location, client_version = excluded.client_version, arch = excluded.arch,
     opened_at = excluded.opened_at, edge_id = excluded.edge_id`,
  forget: 'DELETE FROM tunnel_connections WHERE id = @id',
  /** An earlier run's rows at a location: written without an edge id, or by an edge that is not live (never a live edge's). */
  forgetAt: `DELETE FROM tunnel_connections WHERE edge_location = @edgeLocation
     AND (edge_id IS NULL OR edge_id NOT IN (SELECT id FROM edges WHERE heartbeat_at >= @liveSince))`,
} as const;

/** LIKE patterns treat % and _ as wildcards; names may contain `_`. */
const likePrefix = (prefix: string) => `${prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

export class TunnelRepository {
  constructor(private readonly sql: Sql) {}

  async insert(t: Omit<Tunnel, 'deletedAt'>): Promise<void> {
    await this.sql.run('INSERT INTO tunnels (id, name, secret, created_at) VALUES (@id, @name, @secret, @createdAt)', {
      id: t.id,
      name: t.name,
      secret: t.secret,
      createdAt: t.createdAt,
    });
  }

  async byId(id: string): Promise<Tunnel | undefined> {
    const r = await this.sql.get<TunnelDbRow>('SELECT * FROM tunnels WHERE id = @id', { id });
    return r && toTunnel(r);
  }

  async byLiveName(name: string): Promise<Tunnel | undefined> {
    const r = await this.sql.get<TunnelDbRow>('SELECT * FROM tunnels WHERE name = @name AND deleted_at IS NULL', { name });
    return r && toTunnel(r);
  }

  async list(filter: TunnelFilter = {}): Promise<Tunnel[]> {
    // SQLite's LIKE ignores ASCII case; PostgreSQL's ILIKE does the same.
    const like = this.sql.dialect === 'sqlite' ? 'LIKE' : 'ILIKE';
    const rows = await this.sql.all<TunnelDbRow>(
      `SELECT * FROM tunnels
        WHERE (@id::text IS NULL OR id = @id)
          AND (@name::text IS NULL OR name = @name)
          AND (@namePrefix::text IS NULL OR name ${like} @namePrefix ESCAPE '\\')
          AND (@excludeNamePrefix::text IS NULL OR name NOT ${like} @excludeNamePrefix ESCAPE '\\')
          AND (@showDeleted = 1 OR deleted_at IS NULL)
        ORDER BY created_at, ${insertionOrder(this.sql)}`,
      {
        id: filter.id ?? null,
        name: filter.name ?? null,
        namePrefix: filter.namePrefix === undefined ? null : likePrefix(filter.namePrefix),
        excludeNamePrefix: filter.excludeNamePrefix === undefined ? null : likePrefix(filter.excludeNamePrefix),
        showDeleted: filter.showDeleted ? 1 : 0,
      },
    );
    return rows.map(toTunnel);
  }

  async softDelete(id: string, at: string): Promise<void> {
    await this.sql.run('UPDATE tunnels SET deleted_at = @at WHERE id = @id', { id, at });
  }

  async recordConnection(c: TunnelConnection): Promise<void> {
    await this.sql.run(CONNECTION_WRITES.record, {
      id: c.id,
      tunnelId: c.tunnelId,
      connectorId: c.connectorId,
      connIndex: c.connIndex,
      protocol: c.protocol,
      originIp: c.originIp,
      edgeLocation: c.edgeLocation,
      clientVersion: c.clientVersion,
      arch: c.arch,
      openedAt: c.openedAt,
      edgeId: c.edgeId ?? null,
    });
  }

  async forgetConnection(id: string): Promise<void> {
    await this.sql.run(CONNECTION_WRITES.forget, { id });
  }

  async forgetConnections(tunnelId: string): Promise<number> {
    return this.sql.run('DELETE FROM tunnel_connections WHERE tunnel_id = @tunnelId', { tunnelId });
  }

  /**
   * Forgets what an earlier run at an edge location recorded (it restarted, so those
   * connections are gone): rows without an edge id, or of an edge whose heartbeat is stale.
   * Another live edge (or worker) at the same location keeps its rows.
   */
  async forgetConnectionsAt(edgeLocation: string): Promise<number> {
    return this.sql.run(CONNECTION_WRITES.forgetAt, { edgeLocation, liveSince: liveSince() });
  }

  async connections(tunnelId: string): Promise<TunnelConnection[]> {
    const rows = await this.sql.all<ConnectionDbRow>(
      `SELECT * FROM tunnel_connections WHERE tunnel_id = @tunnelId AND ${LIVE_CONNECTION} ORDER BY conn_index, opened_at`,
      { tunnelId, liveSince: liveSince() },
    );
    return rows.map(toConnection);
  }

  /** All recorded connections grouped by tunnel: one query for a whole `tunnel list`. */
  async connectionsByTunnel(): Promise<Map<string, TunnelConnection[]>> {
    const byTunnel = new Map<string, TunnelConnection[]>();
    const rows = await this.sql.all<ConnectionDbRow>(`SELECT * FROM tunnel_connections WHERE ${LIVE_CONNECTION} ORDER BY conn_index, opened_at`, {
      liveSince: liveSince(),
    });
    for (const c of rows.map(toConnection)) {
      const list = byTunnel.get(c.tunnelId) ?? [];
      list.push(c);
      byTunnel.set(c.tunnelId, list);
    }
    return byTunnel;
  }
}
