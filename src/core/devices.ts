import { randomBytes } from 'node:crypto';
import { OxyError } from './errors.js';
import { isUuid, newId, nowRfc3339 } from './common.js';
import { decodeBase64Token } from './credentials.js';
import { resolveVnet } from './vnets.js';
import type { Device, Store } from '../store/index.js';

/** What `warp connect --token` needs on another host: who it is, its secret, and the edge. */
export interface DeviceToken {
  /** account (tenant) */
  a: string;
  /** device id */
  d: string;
  /** base64 secret */
  s: string;
  /** edge HOST:PORT */
  e?: string;
  /** edge CA pin */
  p?: string;
}

/**
 * Enrolls a device; with `vnets` (IDs or names) it may use only those virtual networks, over
 * GUE and over `warp connect --token` alike. Without, every vnet of the account.
 */
export function enrollDevice(store: Store, name: string, vnets: readonly string[] = []): Device & { vnets: string[] } {
  if (!name.trim() || isUuid(name)) throw new OxyError('OXY_ERR_INVALID_NAME', 'A device name cannot be empty or a UUID.');
  return store.write(() => {
    if (store.devices.byLiveName(name)) throw new OxyError('OXY_ERR_DEVICE_EXISTS', `A device named ${name} is already enrolled.`);
    const vnetIds = vnets.map((ref) => resolveVnet(store, ref).id);
    const device: Device = { id: newId(), name, secret: randomBytes(32).toString('base64'), createdAt: nowRfc3339(), deletedAt: null };
    store.devices.insert(device);
    store.devices.addVnets(device.id, vnetIds);
    return { ...device, vnets: vnetIds };
  });
}

export const encodeDeviceToken = (t: DeviceToken): string => Buffer.from(JSON.stringify(t)).toString('base64');

export const decodeDeviceToken = (text: string): DeviceToken =>
  decodeBase64Token<DeviceToken>(text, ['a', 'd', 's'], 'Provided device token is not valid. Get one with: oxyctl warp enroll NAME');

/** An enrolled device by ID or live name. */
export function resolveDevice(store: Store, ref: string): Device {
  const device = isUuid(ref) ? store.devices.byId(ref.toLowerCase()) : store.devices.byLiveName(ref);
  if (!device || device.deletedAt) throw new OxyError('OXY_ERR_DEVICE_NOT_FOUND', `${ref} is neither the ID nor the name of any enrolled device`);
  return device;
}

/** Revokes a device: its token stops working at its next registration with the edge. */
export function revokeDevice(store: Store, ref: string): Device {
  return store.write(() => {
    const device = resolveDevice(store, ref);
    store.devices.softDelete(device.id, nowRfc3339());
    return store.devices.byId(device.id)!;
  });
}
