import type { Sql } from './sql.js';

/** A dashboard login token as stored: its SHA-256 (hex), never the token. */
export interface DashboardToken {
  id: string;
  tokenHash: string;
  createdAt: string;
}

export class DashboardTokenRepository {
  constructor(private readonly sql: Sql) {}

  async insert(t: DashboardToken): Promise<void> {
    await this.sql.run('INSERT INTO dashboard_tokens (id, token_hash, created_at) VALUES (@id, @tokenHash, @createdAt)', {
      id: t.id,
      tokenHash: t.tokenHash,
      createdAt: t.createdAt,
    });
  }

  async exists(tokenHash: string): Promise<boolean> {
    return (await this.sql.get('SELECT 1 AS one FROM dashboard_tokens WHERE token_hash = @tokenHash', { tokenHash })) !== undefined;
  }

  /** Forgets every token (the previous ones stop working). */
  async clear(): Promise<number> {
    return this.sql.run('DELETE FROM dashboard_tokens');
  }
}
