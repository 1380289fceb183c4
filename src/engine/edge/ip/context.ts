import type { IpContext } from '../../flow/types.js';

/** Largest context accepted (the first SEQPACKET datagram). */
export const MAX_CONTEXT_BYTES = 16 * 1024;

/**
 * Parses an on-ramp context: a JSON object with `tenant` (or `account`) and optional
 * `vnet`; every other field is kept for the application. Undefined when not valid.
 */
export function parseContext(data: Uint8Array): IpContext | undefined {
  if (data.length === 0 || data.length > MAX_CONTEXT_BYTES) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.length).toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const fields = value as Record<string, unknown>;
  const tenant = fields.tenant ?? fields.account;
  const vnet = fields.vnet ?? '';
  if (typeof tenant !== 'string' || tenant.length === 0 || typeof vnet !== 'string') return undefined;
  return { ...fields, tenant, vnet };
}
