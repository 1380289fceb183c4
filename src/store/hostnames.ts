import { bytewise, type Sql } from './sql.js';

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
  constructor(private readonly sql: Sql) {}

  async insert(h: Omit<HostnameRoute, 'deletedAt'>): Promise<void> {
    await this.sql.run('INSERT INTO hostnames (id, hostname, tunnel_id, created_at) VALUES (@id, @hostname, @tunnelId, @createdAt)', {
      id: h.id,
      hostname: h.hostname,
      tunnelId: h.tunnelId,
      createdAt: h.createdAt,
    });
  }

  async live(hostname: string): Promise<HostnameRoute | undefined> {
    const r = await this.sql.get<HostnameDbRow>('SELECT * FROM hostnames WHERE hostname = @hostname AND deleted_at IS NULL', { hostname });
    return r && toHostname(r);
  }

  async allLive(): Promise<HostnameRoute[]> {
    return (await this.sql.all<HostnameDbRow>(`SELECT * FROM hostnames WHERE deleted_at IS NULL ORDER BY ${bytewise(this.sql, 'hostname')}`)).map(toHostname);
  }

  async softDelete(id: string, at: string): Promise<void> {
    await this.sql.run('UPDATE hostnames SET deleted_at = @at WHERE id = @id', { id, at });
  }

  async softDeleteForTunnel(tunnelId: string, at: string): Promise<number> {
    return this.sql.run('UPDATE hostnames SET deleted_at = @at WHERE tunnel_id = @tunnelId AND deleted_at IS NULL', { tunnelId, at });
  }
}
