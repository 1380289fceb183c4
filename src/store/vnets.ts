import { insertionOrder, type Sql } from './sql.js';

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
  constructor(private readonly sql: Sql) {}

  async insert(v: Omit<Vnet, 'deletedAt'>): Promise<void> {
    await this.sql.run('INSERT INTO vnets (id, name, comment, is_default, created_at) VALUES (@id, @name, @comment, @isDefault, @createdAt)', {
      id: v.id,
      name: v.name,
      comment: v.comment,
      isDefault: v.isDefault ? 1 : 0,
      createdAt: v.createdAt,
    });
  }

  async byId(id: string): Promise<Vnet | undefined> {
    const r = await this.sql.get<VnetDbRow>('SELECT * FROM vnets WHERE id = @id', { id });
    return r && toVnet(r);
  }

  async byLiveName(name: string): Promise<Vnet | undefined> {
    const r = await this.sql.get<VnetDbRow>('SELECT * FROM vnets WHERE name = @name AND deleted_at IS NULL', { name });
    return r && toVnet(r);
  }

  async defaultVnet(): Promise<Vnet | undefined> {
    const r = await this.sql.get<VnetDbRow>('SELECT * FROM vnets WHERE is_default = 1');
    return r && toVnet(r);
  }

  async list(filter: VnetFilter = {}): Promise<Vnet[]> {
    const rows = await this.sql.all<VnetDbRow>(
      `SELECT * FROM vnets
        WHERE (@id::text IS NULL OR id = @id)
          AND (@name::text IS NULL OR name = @name)
          AND (@isDefault::integer IS NULL OR is_default = @isDefault)
          AND (@showDeleted = 1 OR deleted_at IS NULL)
        ORDER BY created_at, ${insertionOrder(this.sql)}`,
      {
        id: filter.id ?? null,
        name: filter.name ?? null,
        isDefault: filter.isDefault === undefined ? null : filter.isDefault ? 1 : 0,
        showDeleted: filter.showDeleted ? 1 : 0,
      },
    );
    return rows.map(toVnet);
  }

  /** Makes `id` the only default; call inside a write transaction. */
  async makeDefault(id: string): Promise<void> {
    await this.clearDefault();
    await this.sql.run('UPDATE vnets SET is_default = 1 WHERE id = @id', { id });
  }

  async clearDefault(): Promise<void> {
    await this.sql.run('UPDATE vnets SET is_default = 0 WHERE is_default = 1');
  }

  async rename(id: string, name: string): Promise<void> {
    await this.sql.run('UPDATE vnets SET name = @name WHERE id = @id', { id, name });
  }

  async setComment(id: string, comment: string): Promise<void> {
    await this.sql.run('UPDATE vnets SET comment = @comment WHERE id = @id', { id, comment });
  }

  async softDelete(id: string, at: string): Promise<void> {
    await this.sql.run('UPDATE vnets SET deleted_at = @at, is_default = 0 WHERE id = @id', { id, at });
  }
}
