/**
 * The edge dashboard's login token (`oxyctl edge dashboard-token`). The store keeps a SHA-256
 * of each token only; a new token replaces the previous ones, so printing one is also how a
 * leaked token is revoked.
 */
import { createHash, randomBytes } from 'node:crypto';
import { newId, nowRfc3339 } from './common.js';
import type { Store } from '../store/index.js';
import type { TunnelOverview, TunnelStatus } from './dashboard-wire.js';

/** Tokens start with this, so a token pasted in the wrong place is recognisable. */
const TOKEN_PREFIX = 'oxyd_';

export const hashDashboardToken = (token: string): string => createHash('sha256').update(token).digest('hex');

/** Makes a new dashboard token (the previous ones stop working) and returns it: the only time it is shown. */
export async function createDashboardToken(store: Store): Promise<string> {
  const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
  await store.write(async () => {
    await store.dashboardTokens.clear();
    await store.dashboardTokens.insert({ id: newId(), tokenHash: hashDashboardToken(token), createdAt: nowRfc3339() });
  });
  return token;
}

/**
 * The hash of `token` if it is the current dashboard token. Looked up by its SHA-256, so the
 * lookup's timing says nothing useful about the token itself.
 */
export async function verifyDashboardToken(store: Store, token: string): Promise<string | undefined> {
  if (!token.startsWith(TOKEN_PREFIX) || token.length > 200) return undefined;
  const hash = hashDashboardToken(token);
  return (await store.dashboardTokens.exists(hash)) ? hash : undefined;
}

/** Whether a token that logged in (by its hash) is still current: a new token ends old sessions. */
export const dashboardTokenCurrent = (store: Store, tokenHash: string): Promise<boolean> => store.dashboardTokens.exists(tokenHash);

export type { TunnelOverview, TunnelStatus } from './dashboard-wire.js';

/**
 * Live tunnels with their status, from the connections edges recorded in the store (so every
 * edge sharing the store counts). `down`: no connection; `degraded`: a connector has fewer
 * connections than it had at its best (`seen`, connector ID → most connections seen, kept by
 * the caller across calls) or than its highest connection index implies; else `healthy`.
 */
export async function tunnelOverview(store: Store, seen: Map<string, number> = new Map(), now = Date.now()): Promise<TunnelOverview[]> {
  const [connections, allHostnames, allTunnels] = await Promise.all([store.tunnels.connectionsByTunnel(), store.hostnames.allLive(), store.tunnels.list({})]);
  const hostnames = new Map<string, string[]>();
  for (const h of allHostnames) hostnames.set(h.tunnelId, [...(hostnames.get(h.tunnelId) ?? []), h.hostname]);
  const live = new Set<string>();
  const tunnels = allTunnels.map((t): TunnelOverview => {
    const conns = connections.get(t.id) ?? [];
    const perConnector = new Map<string, { count: number; highest: number }>();
    for (const c of conns) {
      const p = perConnector.get(c.connectorId) ?? { count: 0, highest: -1 };
      p.count++;
      p.highest = Math.max(p.highest, c.connIndex);
      perConnector.set(c.connectorId, p);
    }
    let status: TunnelStatus = conns.length === 0 ? 'down' : 'healthy';
    for (const [connector, p] of perConnector) {
      live.add(connector);
      const best = Math.max(seen.get(connector) ?? 0, p.count, p.highest + 1);
      seen.set(connector, best);
      if (p.count < best) status = 'degraded';
    }
    return {
      id: t.id,
      name: t.name,
      created_at: t.createdAt,
      status,
      hostnames: (hostnames.get(t.id) ?? []).sort(),
      connections: conns.map((c) => ({
        id: c.id,
        connector_id: c.connectorId,
        conn_index: c.connIndex,
        edge: c.edgeLocation,
        protocol: c.protocol,
        origin_ip: c.originIp,
        client_version: c.clientVersion,
        arch: c.arch,
        opened_at: c.openedAt,
        uptime_seconds: Math.max(0, Math.round((now - Date.parse(c.openedAt)) / 1000)),
      })),
    };
  });
  // A connector with no connection left is gone: it starts afresh if it comes back.
  for (const connector of seen.keys()) if (!live.has(connector)) seen.delete(connector);
  return tunnels.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
