import type { Db } from './db.js';

export interface HostnameRoute {
  id: string;
  hostname: string;
  tunnelId: string;
  createdAt: string;
  deletedAt: string | null;
}

interface HostnameDbRow {
  id: string;
  hostname: string;
  tunnel_id: string;
  created_at: string;
  deleted_at: string | null;
}

const toHostname = (r: HostnameDbRow): HostnameRoute => ({
  id: r.id,
  hostname: r.hostname,
  tunnelId: r.tunnel_id,
  createdAt: r.created_at,
  deletedAt: r.deleted_at,
});

export class HostnameRepository {
  private readonly insertStmt;
  private readonly liveStmt;
  private readonly allLiveStmt;
  private readonly deleteStmt;
  private readonly deleteByTunnelStmt;

  constructor(db: Db) {
    this.insertStmt = db.prepare(
      'INSERT INTO hostnames (id, hostname, tunnel_id, created_at) VALUES (@id, @hostname, @tunnelId, @createdAt)',
    );
    this.liveStmt = db.prepare<[string], HostnameDbRow>('SELECT * FROM hostnames WHERE hostname = ? AND deleted_at IS NULL');
    this.allLiveStmt = db.prepare<[], HostnameDbRow>('SELECT * FROM hostnames WHERE deleted_at IS NULL ORDER BY hostname');
    this.deleteStmt = db.prepare('UPDATE hostnames SET deleted_at = ? WHERE id = ?');
    this.deleteByTunnelStmt = db.prepare('UPDATE hostnames SET deleted_at = ? WHERE tunnel_id = ? AND deleted_at IS NULL');
  }

  insert(h: Omit<HostnameRoute, 'deletedAt'>): void {
    this.insertStmt.run(h);
  }

  live(hostname: string): HostnameRoute | undefined {
    const r = this.liveStmt.get(hostname);
    return r && toHostname(r);
  }

  allLive(): HostnameRoute[] {
    return this.allLiveStmt.all().map(toHostname);
  }

  softDelete(id: string, at: string): void {
    this.deleteStmt.run(at, id);
  }

  softDeleteForTunnel(tunnelId: string, at: string): number {
    return this.deleteByTunnelStmt.run(at, tunnelId).changes;
  }
}
