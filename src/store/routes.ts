import { bytewise, type Sql } from './sql.js';

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

const DETAILED = `SELECT r.id, r.vnet_id, r.tunnel_id, r.network, r.comment, r.created_at, r.deleted_at,
    t.name AS tunnel_name, v.name AS vnet_name
  FROM routes r JOIN tunnels t ON t.id = r.tunnel_id JOIN vnets v ON v.id = r.vnet_id`;

export class RouteRepository {
  constructor(private readonly sql: Sql) {}

  async insert(route: Omit<Route, 'deletedAt'>, range: NetworkRange): Promise<void> {
    await this.sql.run(
      `INSERT INTO routes (id, vnet_id, tunnel_id, network, family, prefix_len, range_start, range_end, comment, created_at)
       VALUES (@id, @vnetId, @tunnelId, @network, @family, @prefixLen, @start, @end, @comment, @createdAt)`,
      {
        id: route.id,
        vnetId: route.vnetId,
        tunnelId: route.tunnelId,
        network: route.network,
        comment: route.comment,
        createdAt: route.createdAt,
        family: range.family,
        prefixLen: range.prefixLen,
        start: range.start,
        end: range.end,
      },
    );
  }

  async byId(id: string): Promise<DetailedRoute | undefined> {
    const r = await this.sql.get<RouteDbRow>(`${DETAILED} WHERE r.id = @id`, { id });
    return r && toRoute(r);
  }

  async liveByNetwork(vnetId: string, network: string): Promise<DetailedRoute | undefined> {
    const r = await this.sql.get<RouteDbRow>(`${DETAILED} WHERE r.vnet_id = @vnetId AND r.network = @network AND r.deleted_at IS NULL`, { vnetId, network });
    return r && toRoute(r);
  }

  async list(filter: RouteFilter = {}): Promise<DetailedRoute[]> {
    const rows = await this.sql.all<RouteDbRow>(
      `${DETAILED}
        WHERE (CASE WHEN @isDeleted = 1 THEN r.deleted_at IS NOT NULL ELSE r.deleted_at IS NULL END)
          AND (@tunnelId::text IS NULL OR r.tunnel_id = @tunnelId)
          AND (@vnetId::text IS NULL OR r.vnet_id = @vnetId)
          AND (@commentIs::text IS NULL OR r.comment = @commentIs)
          AND (@subFamily::integer IS NULL OR (r.family = @subFamily AND r.range_start >= @subStart AND r.range_end <= @subEnd))
          AND (@supFamily::integer IS NULL OR (r.family = @supFamily AND r.range_start <= @supStart AND r.range_end >= @supEnd))
        ORDER BY ${bytewise(this.sql, 'v.name')}, r.family, r.range_start, r.prefix_len`,
      {
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
      },
    );
    return rows.map(toRoute);
  }

  async liveInVnet(vnetId: string): Promise<DetailedRoute[]> {
    return (await this.sql.all<RouteDbRow>(`${DETAILED} WHERE r.vnet_id = @vnetId AND r.deleted_at IS NULL`, { vnetId })).map(toRoute);
  }

  async allLive(): Promise<DetailedRoute[]> {
    return (await this.sql.all<RouteDbRow>(`${DETAILED} WHERE r.deleted_at IS NULL`)).map(toRoute);
  }

  async softDelete(id: string, at: string): Promise<boolean> {
    return (await this.sql.run('UPDATE routes SET deleted_at = @at WHERE id = @id AND deleted_at IS NULL', { id, at })) === 1;
  }

  async softDeleteInVnet(vnetId: string, at: string): Promise<number> {
    return this.sql.run('UPDATE routes SET deleted_at = @at WHERE vnet_id = @vnetId AND deleted_at IS NULL', { vnetId, at });
  }

  async softDeleteForTunnel(tunnelId: string, at: string): Promise<number> {
    return this.sql.run('UPDATE routes SET deleted_at = @at WHERE tunnel_id = @tunnelId AND deleted_at IS NULL', { tunnelId, at });
  }

  async countLiveInVnet(vnetId: string): Promise<number> {
    const r = await this.sql.get<{ n: number }>('SELECT CAST(count(*) AS INTEGER) AS n FROM routes WHERE vnet_id = @vnetId AND deleted_at IS NULL', { vnetId });
    return r!.n;
  }

  async countLiveForTunnel(tunnelId: string): Promise<number> {
    const r = await this.sql.get<{ n: number }>('SELECT CAST(count(*) AS INTEGER) AS n FROM routes WHERE tunnel_id = @tunnelId AND deleted_at IS NULL', {
      tunnelId,
    });
    return r!.n;
  }
}
