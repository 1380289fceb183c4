import type { Db } from './db.js';

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
  private readonly insertStmt;
  private readonly byIdStmt;
  private readonly byLiveNameStmt;
  private readonly listStmt;
  private readonly deleteStmt;
  private readonly addVnetStmt;
  private readonly vnetsStmt;
  private readonly allVnetsStmt;

  constructor(db: Db) {
    this.insertStmt = db.prepare('INSERT INTO devices (id, name, secret, created_at) VALUES (@id, @name, @secret, @createdAt)');
    this.byIdStmt = db.prepare<[string], DeviceDbRow>('SELECT * FROM devices WHERE id = ?');
    this.byLiveNameStmt = db.prepare<[string], DeviceDbRow>('SELECT * FROM devices WHERE name = ? AND deleted_at IS NULL');
    this.listStmt = db.prepare<[number], DeviceDbRow>('SELECT * FROM devices WHERE (? = 1 OR deleted_at IS NULL) ORDER BY created_at, rowid');
    this.deleteStmt = db.prepare('UPDATE devices SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL');
    this.addVnetStmt = db.prepare('INSERT OR IGNORE INTO device_vnets (device_id, vnet_id) VALUES (?, ?)');
    this.vnetsStmt = db.prepare<[string], { vnet_id: string }>('SELECT vnet_id FROM device_vnets WHERE device_id = ? ORDER BY vnet_id');
    this.allVnetsStmt = db.prepare<[], { device_id: string; vnet_id: string }>('SELECT device_id, vnet_id FROM device_vnets');
  }

  list(showDeleted = false): Device[] {
    return this.listStmt.all(showDeleted ? 1 : 0).map(toDevice);
  }

  softDelete(id: string, at: string): void {
    this.deleteStmt.run(at, id);
  }

  insert(d: Omit<Device, 'deletedAt'>): void {
    this.insertStmt.run(d);
  }

  /** Restricts a device to these vnets (added to those it has). */
  addVnets(id: string, vnetIds: readonly string[]): void {
    for (const vnetId of vnetIds) this.addVnetStmt.run(id, vnetId);
  }

  /** The vnets a device is restricted to; empty: every vnet. */
  vnetsOf(id: string): string[] {
    return this.vnetsStmt.all(id).map((r) => r.vnet_id);
  }

  /** Every device's vnet restriction (devices without one are absent). */
  allVnetRestrictions(): Map<string, Set<string>> {
    const out = new Map<string, Set<string>>();
    for (const r of this.allVnetsStmt.all()) {
      let set = out.get(r.device_id);
      if (!set) out.set(r.device_id, (set = new Set()));
      set.add(r.vnet_id);
    }
    return out;
  }

  byId(id: string): Device | undefined {
    const r = this.byIdStmt.get(id);
    return r && toDevice(r);
  }

  byLiveName(name: string): Device | undefined {
    const r = this.byLiveNameStmt.get(name);
    return r && toDevice(r);
  }
}
