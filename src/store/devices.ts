import { bytewise, insertionOrder, type Sql } from './sql.js';

export interface Device {
  id: string;
  name: string;
  /** base64 of the device secret (32 bytes). */
  secret: string;
  createdAt: string;
  deletedAt: string | null;
}

interface DeviceDbRow {
  id: string;
  name: string;
  secret: string;
  created_at: string;
  deleted_at: string | null;
}

const toDevice = (r: DeviceDbRow): Device => ({ id: r.id, name: r.name, secret: r.secret, createdAt: r.created_at, deletedAt: r.deleted_at });

export class DeviceRepository {
  constructor(private readonly sql: Sql) {}

  async list(showDeleted = false): Promise<Device[]> {
    const rows = await this.sql.all<DeviceDbRow>(
      `SELECT * FROM devices WHERE (@showDeleted = 1 OR deleted_at IS NULL) ORDER BY created_at, ${insertionOrder(this.sql)}`,
      { showDeleted: showDeleted ? 1 : 0 },
    );
    return rows.map(toDevice);
  }

  async softDelete(id: string, at: string): Promise<void> {
    await this.sql.run('UPDATE devices SET deleted_at = @at WHERE id = @id AND deleted_at IS NULL', { id, at });
  }

  async insert(d: Omit<Device, 'deletedAt'>): Promise<void> {
    await this.sql.run('INSERT INTO devices (id, name, secret, created_at) VALUES (@id, @name, @secret, @createdAt)', {
      id: d.id,
      name: d.name,
      secret: d.secret,
      createdAt: d.createdAt,
    });
  }

  /** Restricts a device to these vnets (added to those it has). */
  async addVnets(id: string, vnetIds: readonly string[]): Promise<void> {
    for (const vnetId of vnetIds) {
      await this.sql.run('INSERT INTO device_vnets (device_id, vnet_id) VALUES (@id, @vnetId) ON CONFLICT DO NOTHING', { id, vnetId });
    }
  }

  /** The vnets a device is restricted to; empty: every vnet. */
  async vnetsOf(id: string): Promise<string[]> {
    const rows = await this.sql.all<{ vnet_id: string }>(`SELECT vnet_id FROM device_vnets WHERE device_id = @id ORDER BY ${bytewise(this.sql, 'vnet_id')}`, {
      id,
    });
    return rows.map((r) => r.vnet_id);
  }

  /** Every device's vnet restriction (devices without one are absent). */
  async allVnetRestrictions(): Promise<Map<string, Set<string>>> {
    const out = new Map<string, Set<string>>();
    for (const r of await this.sql.all<{ device_id: string; vnet_id: string }>('SELECT device_id, vnet_id FROM device_vnets')) {
      let set = out.get(r.device_id);
      if (!set) out.set(r.device_id, (set = new Set()));
      set.add(r.vnet_id);
    }
    return out;
  }

  async byId(id: string): Promise<Device | undefined> {
    const r = await this.sql.get<DeviceDbRow>('SELECT * FROM devices WHERE id = @id', { id });
    return r && toDevice(r);
  }

  async byLiveName(name: string): Promise<Device | undefined> {
    const r = await this.sql.get<DeviceDbRow>('SELECT * FROM devices WHERE name = @name AND deleted_at IS NULL', { name });
    return r && toDevice(r);
  }
}
