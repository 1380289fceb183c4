import type { Db } from './db.js';

export interface Route {
  id: string;
  vnetId: string;
  tunnelId: string;
  /** Canonical CIDR: `10.1.0.0/16`, `2001:db8::/32`. */
  network: string;
  comment: string;
  createdAt: string;
  deletedAt: string | null;
}

/** A route with the names the CLI shows beside it. */
export interface DetailedRoute extends Route {
  tunnelName: string;
  vnetName: string;
}

/** Where a network sits in its family's address space, as big-endian bytes. */
export interface NetworkRange {
  family: 4 | 6;
  prefixLen: number;
  start: Buffer;
  end: Buffer;
}

export interface RouteFilter {
  isDeleted?: boolean;
  tunnelId?: string;
  vnetId?: string;
  commentIs?: string;
  /** Routes whose network lies inside this range. */
  subsetOf?: NetworkRange;
  /** Routes whose network contains this range. */
  supersetOf?: NetworkRange;
}

interface RouteDbRow {
  id: string;
  vnet_id: string;
  tunnel_id: string;
  network: string;
  comment: string;
  created_at: string;
  deleted_at: string | null;
  tunnel_name: string;
  vnet_name: string;
}

const toRoute = (r: RouteDbRow): DetailedRoute => ({
  id: r.id,
  vnetId: r.vnet_id,
  tunnelId: r.tunnel_id,
  network: r.network,
  comment: r.comment,
  createdAt: r.created_at,
  deletedAt: r.deleted_at,
  tunnelName: r.tunnel_name,
  vnetName: r.vnet_name,
});

const DETAILED = `SELECT r.*, t.name AS tunnel_name, v.name AS vnet_name
  FROM routes r JOIN tunnels t ON t.id = r.tunnel_id JOIN vnets v ON v.id = r.vnet_id`;

export class RouteRepository {
  private readonly insertStmt;
  private readonly byIdStmt;
  private readonly liveByNetworkStmt;
  private readonly listStmt;
  private readonly liveInVnetStmt;
  private readonly allLiveStmt;
  private readonly deleteStmt;
  private readonly deleteByVnetStmt;
  private readonly deleteByTunnelStmt;
  private readonly countByVnetStmt;
  private readonly countByTunnelStmt;

  constructor(db: Db) {
    this.insertStmt = db.prepare(
      `INSERT INTO routes (id, vnet_id, tunnel_id, network, family, prefix_len, range_start, range_end, comment, created_at)
       VALUES (@id, @vnetId, @tunnelId, @network, @family, @prefixLen, @start, @end, @comment, @createdAt)`,
    );
    this.byIdStmt = db.prepare<[string], RouteDbRow>(`${DETAILED} WHERE r.id = ?`);
    this.liveByNetworkStmt = db.prepare<[string, string], RouteDbRow>(
      `${DETAILED} WHERE r.vnet_id = ? AND r.network = ? AND r.deleted_at IS NULL`,
    );
    this.listStmt = db.prepare<Record<string, unknown>, RouteDbRow>(
      `${DETAILED}
        WHERE (CASE WHEN @isDeleted = 1 THEN r.deleted_at IS NOT NULL ELSE r.deleted_at IS NULL END)
          AND (@tunnelId IS NULL OR r.tunnel_id = @tunnelId)
          AND (@vnetId IS NULL OR r.vnet_id = @vnetId)
          AND (@commentIs IS NULL OR r.comment = @commentIs)
          AND (@subFamily IS NULL OR (r.family = @subFamily AND r.range_start >= @subStart AND r.range_end <= @subEnd))
          AND (@supFamily IS NULL OR (r.family = @supFamily AND r.range_start <= @supStart AND r.range_end >= @supEnd))
        ORDER BY v.name, r.family, r.range_start, r.prefix_len`,
    );
    this.liveInVnetStmt = db.prepare<[string], RouteDbRow>(`${DETAILED} WHERE r.vnet_id = ? AND r.deleted_at IS NULL`);
    this.allLiveStmt = db.prepare<[], RouteDbRow>(`${DETAILED} WHERE r.deleted_at IS NULL`);
    this.deleteStmt = db.prepare('UPDATE routes SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL');
    this.deleteByVnetStmt = db.prepare('UPDATE routes SET deleted_at = ? WHERE vnet_id = ? AND deleted_at IS NULL');
    this.deleteByTunnelStmt = db.prepare('UPDATE routes SET deleted_at = ? WHERE tunnel_id = ? AND deleted_at IS NULL');
    this.countByVnetStmt = db.prepare<[string], { n: number }>(
      'SELECT count(*) AS n FROM routes WHERE vnet_id = ? AND deleted_at IS NULL',
    );
    this.countByTunnelStmt = db.prepare<[string], { n: number }>(
      'SELECT count(*) AS n FROM routes WHERE tunnel_id = ? AND deleted_at IS NULL',
    );
  }

  insert(route: Omit<Route, 'deletedAt'>, range: NetworkRange): void {
    this.insertStmt.run({ ...route, family: range.family, prefixLen: range.prefixLen, start: range.start, end: range.end });
  }

  byId(id: string): DetailedRoute | undefined {
    const r = this.byIdStmt.get(id);
    return r && toRoute(r);
  }

  liveByNetwork(vnetId: string, network: string): DetailedRoute | undefined {
    const r = this.liveByNetworkStmt.get(vnetId, network);
    return r && toRoute(r);
  }

  list(filter: RouteFilter = {}): DetailedRoute[] {
    return this.listStmt
      .all({
        isDeleted: filter.isDeleted ? 1 : 0,
        tunnelId: filter.tunnelId ?? null,
        vnetId: filter.vnetId ?? null,
        commentIs: filter.commentIs ?? null,
        subFamily: filter.subsetOf?.family ?? null,
        subStart: filter.subsetOf?.start ?? null,
        subEnd: filter.subsetOf?.end ?? null,
        supFamily: filter.supersetOf?.family ?? null,
        supStart: filter.supersetOf?.start ?? null,
        supEnd: filter.supersetOf?.end ?? null,
      })
      .map(toRoute);
  }

  liveInVnet(vnetId: string): DetailedRoute[] {
    return this.liveInVnetStmt.all(vnetId).map(toRoute);
  }

  allLive(): DetailedRoute[] {
    return this.allLiveStmt.all().map(toRoute);
  }

  softDelete(id: string, at: string): boolean {
    return this.deleteStmt.run(at, id).changes === 1;
  }

  softDeleteInVnet(vnetId: string, at: string): number {
    return this.deleteByVnetStmt.run(at, vnetId).changes;
  }

  softDeleteForTunnel(tunnelId: string, at: string): number {
    return this.deleteByTunnelStmt.run(at, tunnelId).changes;
  }

  countLiveInVnet(vnetId: string): number {
    return this.countByVnetStmt.get(vnetId)!.n;
  }

  countLiveForTunnel(tunnelId: string): number {
    return this.countByTunnelStmt.get(tunnelId)!.n;
  }
}
