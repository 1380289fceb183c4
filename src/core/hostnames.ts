import { domainToASCII } from 'node:url';
import { OxyError } from './errors.js';
import { newId, nowRfc3339 } from './common.js';
import { resolveTunnel } from './tunnels.js';
import { isUniqueViolation, type HostnameRoute, type Store } from '../store/index.js';

const LABELS_RE = /^(\*\.)?([a-z0-9_]([a-z0-9-_]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9-_]{0,61}[a-z0-9_])?$/;

export function normalizeHostname(input: string): string {
  const ascii = domainToASCII(input.replace(/\.$/, '').toLowerCase());
  if (!ascii || ascii.length > 253 || !LABELS_RE.test(ascii)) {
    throw new OxyError('OXY_ERR_INVALID_HOSTNAME', `${input} is not a valid hostname`);
  }
  return ascii;
}

export interface DnsRouteResult {
  route: HostnameRoute;
  tunnelName: string;
  /** The hostname pointed at another tunnel before --overwrite-dns moved it. */
  replacedTunnelId?: string;
}

/** Points a public hostname at a tunnel, as `cloudflared tunnel route dns` does with a CNAME. */
export async function routeDns(store: Store, input: { tunnel: string; hostname: string; overwrite?: boolean }): Promise<DnsRouteResult> {
  const hostname = normalizeHostname(input.hostname);
  const exists = () =>
    new OxyError(
      'OXY_ERR_HOSTNAME_EXISTS',
      `Failed to add route: code: 1003, reason: Failed to create record ${hostname} with err An A, AAAA, or CNAME record with that host already exists. ` +
        `Use --overwrite-dns to point it at this tunnel instead.`,
      { apiCode: 1003 },
    );
  try {
    return await store.write(async () => {
      const tunnel = await resolveTunnel(store, input.tunnel);
      const existing = await store.hostnames.live(hostname);
      if (existing && existing.tunnelId === tunnel.id) return { route: existing, tunnelName: tunnel.name };
      if (existing && !input.overwrite) throw exists();
      const at = nowRfc3339();
      if (existing) await store.hostnames.softDelete(existing.id, at);
      const route: HostnameRoute = { id: newId(), hostname, tunnelId: tunnel.id, createdAt: at, deletedAt: null };
      await store.hostnames.insert(route);
      return { route, tunnelName: tunnel.name, replacedTunnelId: existing?.tunnelId };
    });
  } catch (err) {
    if (isUniqueViolation(err)) throw exists();
    throw err;
  }
}
