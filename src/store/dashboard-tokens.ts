import type { Db } from './db.js';

/** A dashboard login token as stored: its SHA-256 (hex), never the token. */
export interface DashboardToken {
  id: string;
  tokenHash: string;
  createdAt: string;
}

export class DashboardTokenRepository {
  private readonly insertStmt;
  private readonly existsStmt;
  private readonly clearStmt;

  constructor(db: Db) {
    this.insertStmt = db.prepare('INSERT INTO dashboard_tokens (id, token_hash, created_at) VALUES (@id, @tokenHash, @createdAt)');
    this.existsStmt = db.prepare<[string], { one: number }>('SELECT 1 AS one FROM dashboard_tokens WHERE token_hash = ?');
    this.clearStmt = db.prepare('DELETE FROM dashboard_tokens');
  }

  insert(t: DashboardToken): void {
    this.insertStmt.run(t);
  }

  exists(tokenHash: string): boolean {
    return this.existsStmt.get(tokenHash) !== undefined;
  }

  /** Forgets every token (the previous ones stop working). */
  clear(): number {
    return this.clearStmt.run().changes;
  }
}
