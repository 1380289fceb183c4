import { randomBytes } from 'node:crypto';
import { OxyError } from './errors.js';
import { isUuid, newId, nowRfc3339, sequentially } from './common.js';
import { decodeBase64Token } from './credentials.js';
import { resolveVnet } from './vnets.js';
import { isUniqueViolation, type Device, type Store } from '../store/index.js';

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
export async function enrollDevice(store: Store, name: string, vnets: readonly string[] = []): Promise<Device & { vnets: string[] }> {
  if (!name.trim() || isUuid(name)) throw new OxyError('OXY_ERR_INVALID_NAME', 'A device name cannot be empty or a UUID.');
  const exists = () => new OxyError('OXY_ERR_DEVICE_EXISTS', `A device named ${name} is already enrolled.`);
  try {
    return await store.write(async () => {
      if (await store.devices.byLiveName(name)) throw exists();
      const vnetIds = (await sequentially(vnets, (ref) => resolveVnet(store, ref))).map((v) => v.id);
      const device: Device = { id: newId(), name, secret: randomBytes(32).toString('base64'), createdAt: nowRfc3339(), deletedAt: null };
      await store.devices.insert(device);
      await store.devices.addVnets(device.id, vnetIds);
      return { ...device, vnets: vnetIds };
    });
  } catch (err) {
    if (isUniqueViolation(err)) throw exists();
    throw err;
  }
}

export const encodeDeviceToken = (t: DeviceToken): string => Buffer.from(JSON.stringify(t)).toString('base64');

export const decodeDeviceToken = (text: string): DeviceToken =>
  decodeBase64Token<DeviceToken>(text, ['a', 'd', 's'], 'Provided device token is not valid. Get one with: oxyctl warp enroll NAME');

/** An enrolled device by ID or live name. */
export async function resolveDevice(store: Store, ref: string): Promise<Device> {
  const device = isUuid(ref) ? await store.devices.byId(ref.toLowerCase()) : await store.devices.byLiveName(ref);
  if (!device || device.deletedAt) throw new OxyError('OXY_ERR_DEVICE_NOT_FOUND', `${ref} is neither the ID nor the name of any enrolled device`);
  return device;
}

/** Revokes a device: its token stops working at its next registration with the edge. */
export function revokeDevice(store: Store, ref: string): Promise<Device> {
  return store.write(async () => {
    const device = await resolveDevice(store, ref);
    await store.devices.softDelete(device.id, nowRfc3339());
    return (await store.devices.byId(device.id))!;
  });
}
