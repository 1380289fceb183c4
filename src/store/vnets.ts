import type { Db } from './db.js';

export interface Vnet {
  id: string;
  name: string;
  comment: string;
  isDefault: boolean;
  createdAt: string;
  deletedAt: string | null;
}

export interface VnetFilter {
  id?: string;
  name?: string;
  isDefault?: boolean;
  showDeleted?: boolean;
}

interface VnetDbRow {
  id: string;
  name: string;
  comment: string;
  is_default: number;
  created_at: string;
  deleted_at: string | null;
}

const toVnet = (r: VnetDbRow): Vnet => ({
  id: r.id,
  name: r.name,
  comment: r.comment,
  isDefault: r.is_default === 1,
  createdAt: r.created_at,
  deletedAt: r.deleted_at,
});

export class VnetRepository {
  private readonly insertStmt;
  private readonly byIdStmt;
  private readonly byLiveNameStmt;
  private readonly defaultStmt;
  private readonly listStmt;
  private readonly clearDefaultStmt;
  private readonly setDefaultStmt;
  private readonly renameStmt;
  private readonly commentStmt;
  private readonly deleteStmt;

  constructor(db: Db) {
    this.insertStmt = db.prepare(
      'INSERT INTO vnets (id, name, comment, is_default, created_at) VALUES (@id, @name, @comment, @isDefault, @createdAt)',
    );
    this.byIdStmt = db.prepare<[string], VnetDbRow>('SELECT * FROM vnets WHERE id = ?');
    this.byLiveNameStmt = db.prepare<[string], VnetDbRow>('SELECT * FROM vnets WHERE name = ? AND deleted_at IS NULL');
    this.defaultStmt = db.prepare<[], VnetDbRow>('SELECT * FROM vnets WHERE is_default = 1');
    this.listStmt = db.prepare<Record<string, unknown>, VnetDbRow>(
      `SELECT * FROM vnets
        WHERE (@id IS NULL OR id = @id)
          AND (@name IS NULL OR name = @name)
          AND (@isDefault IS NULL OR is_default = @isDefault)
          AND (@showDeleted = 1 OR deleted_at IS NULL)
        ORDER BY created_at, rowid`,
    );
    this.clearDefaultStmt = db.prepare('UPDATE vnets SET is_default = 0 WHERE is_default = 1');
    this.setDefaultStmt = db.prepare('UPDATE vnets SET is_default = 1 WHERE id = ?');
    this.renameStmt = db.prepare('UPDATE vnets SET name = ? WHERE id = ?');
    this.commentStmt = db.prepare('UPDATE vnets SET comment = ? WHERE id = ?');
    this.deleteStmt = db.prepare('UPDATE vnets SET deleted_at = ?, is_default = 0 WHERE id = ?');
  }

  insert(v: Omit<Vnet, 'deletedAt'>): void {
    this.insertStmt.run({ ...v, isDefault: v.isDefault ? 1 : 0 });
  }

  byId(id: string): Vnet | undefined {
    const r = this.byIdStmt.get(id);
    return r && toVnet(r);
  }

  byLiveName(name: string): Vnet | undefined {
    const r = this.byLiveNameStmt.get(name);
    return r && toVnet(r);
  }

  defaultVnet(): Vnet | undefined {
    const r = this.defaultStmt.get();
    return r && toVnet(r);
  }

  list(filter: VnetFilter = {}): Vnet[] {
    return this.listStmt
      .all({
        id: filter.id ?? null,
        name: filter.name ?? null,
        isDefault: filter.isDefault === undefined ? null : filter.isDefault ? 1 : 0,
        showDeleted: filter.showDeleted ? 1 : 0,
      })
      .map(toVnet);
  }

  /** Makes `id` the only default; call inside a write transaction. */
  makeDefault(id: string): void {
    this.clearDefault();
    this.setDefaultStmt.run(id);
  }

  clearDefault(): void {
    this.clearDefaultStmt.run();
  }

  rename(id: string, name: string): void {
    this.renameStmt.run(name, id);
  }

  setComment(id: string, comment: string): void {
    this.commentStmt.run(comment, id);
  }

  softDelete(id: string, at: string): void {
    this.deleteStmt.run(at, id);
  }
}
