import type { Db } from './db.js';

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
});

/**
 * The writes a running edge makes to record its live connections. Shared with the edge's
 * background writer (engine/edge/store-writer.ts), which runs them on a connection of its own
 * off the event loop.
 */
export const CONNECTION_WRITES = {
  record: `INSERT OR REPLACE INTO tunnel_connections
     (id, tunnel_id, connector_id, conn_index, protocol, origin_ip, edge_location, client_version, arch, opened_at)
   VALUES (@id, @tunnelId, @connectorId, @connIndex, @protocol, @originIp, @edgeLocation, @clientVersion, @arch, @openedAt)`,
  forget: 'DELETE FROM tunnel_connections WHERE id = ?',
  forgetAt: 'DELETE FROM tunnel_connections WHERE edge_location = ?',
} as const;

/** LIKE patterns treat % and _ as wildcards; names may contain `_`. */
const likePrefix = (prefix: string) => `${prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

export class TunnelRepository {
  private readonly insertStmt;
  private readonly byIdStmt;
  private readonly byLiveNameStmt;
  private readonly listStmt;
  private readonly deleteStmt;
  private readonly insertConnStmt;
  private readonly deleteConnStmt;
  private readonly clearConnsStmt;
  private readonly clearAtStmt;
  private readonly connsStmt;
  private readonly allConnsStmt;

  constructor(db: Db) {
    this.insertStmt = db.prepare(
      'INSERT INTO tunnels (id, name, secret, created_at) VALUES (@id, @name, @secret, @createdAt)',
    );
    this.byIdStmt = db.prepare<[string], TunnelDbRow>('SELECT * FROM tunnels WHERE id = ?');
    this.byLiveNameStmt = db.prepare<[string], TunnelDbRow>('SELECT * FROM tunnels WHERE name = ? AND deleted_at IS NULL');
    this.listStmt = db.prepare<Record<string, unknown>, TunnelDbRow>(
      `SELECT * FROM tunnels
        WHERE (@id IS NULL OR id = @id)
          AND (@name IS NULL OR name = @name)
          AND (@namePrefix IS NULL OR name LIKE @namePrefix ESCAPE '\\')
          AND (@excludeNamePrefix IS NULL OR name NOT LIKE @excludeNamePrefix ESCAPE '\\')
          AND (@showDeleted = 1 OR deleted_at IS NULL)
        ORDER BY created_at, rowid`,
    );
    this.deleteStmt = db.prepare('UPDATE tunnels SET deleted_at = ? WHERE id = ?');
    this.insertConnStmt = db.prepare(CONNECTION_WRITES.record);
    this.deleteConnStmt = db.prepare(CONNECTION_WRITES.forget);
    this.clearConnsStmt = db.prepare('DELETE FROM tunnel_connections WHERE tunnel_id = ?');
    this.clearAtStmt = db.prepare(CONNECTION_WRITES.forgetAt);
    this.connsStmt = db.prepare<[string], ConnectionDbRow>(
      'SELECT * FROM tunnel_connections WHERE tunnel_id = ? ORDER BY conn_index, opened_at',
    );
    this.allConnsStmt = db.prepare<[], ConnectionDbRow>('SELECT * FROM tunnel_connections ORDER BY conn_index, opened_at');
  }

  insert(t: Omit<Tunnel, 'deletedAt'>): void {
    this.insertStmt.run(t);
  }

  byId(id: string): Tunnel | undefined {
    const r = this.byIdStmt.get(id);
    return r && toTunnel(r);
  }

  byLiveName(name: string): Tunnel | undefined {
    const r = this.byLiveNameStmt.get(name);
    return r && toTunnel(r);
  }

  list(filter: TunnelFilter = {}): Tunnel[] {
    return this.listStmt
      .all({
        id: filter.id ?? null,
        name: filter.name ?? null,
        namePrefix: filter.namePrefix === undefined ? null : likePrefix(filter.namePrefix),
        excludeNamePrefix: filter.excludeNamePrefix === undefined ? null : likePrefix(filter.excludeNamePrefix),
        showDeleted: filter.showDeleted ? 1 : 0,
      })
      .map(toTunnel);
  }

  softDelete(id: string, at: string): void {
    this.deleteStmt.run(at, id);
  }

  recordConnection(c: TunnelConnection): void {
    this.insertConnStmt.run(c);
  }

  forgetConnection(id: string): void {
    this.deleteConnStmt.run(id);
  }

  forgetConnections(tunnelId: string): number {
    return this.clearConnsStmt.run(tunnelId).changes;
  }

  /** Forgets what an edge location recorded (it restarted, so those connections are gone). */
  forgetConnectionsAt(edgeLocation: string): number {
    return this.clearAtStmt.run(edgeLocation).changes;
  }

  connections(tunnelId: string): TunnelConnection[] {
    return this.connsStmt.all(tunnelId).map(toConnection);
  }

  /** All recorded connections grouped by tunnel: one query for a whole `tunnel list`. */
  connectionsByTunnel(): Map<string, TunnelConnection[]> {
    const byTunnel = new Map<string, TunnelConnection[]>();
    for (const c of this.allConnsStmt.all().map(toConnection)) {
      const list = byTunnel.get(c.tunnelId) ?? [];
      list.push(c);
      byTunnel.set(c.tunnelId, list);
    }
    return byTunnel;
  }
}
