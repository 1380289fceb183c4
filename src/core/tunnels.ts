import { existsSync, rmSync } from 'node:fs';
import { OxyError } from './errors.js';
import { isUuid, newId, nowRfc3339, sequentially } from './common.js';
import { credentialsPath, encodeToken, tunnelSecret, writeCredentialsFile, type TunnelCredentials } from './credentials.js';
import { isUniqueViolation, type Store, type Tunnel, type TunnelConnection, type TunnelFilter } from '../store/index.js';

export type { Tunnel, TunnelConnection };

/** A tunnel as `tunnel list`/`info` show it: never with its secret. */
export interface TunnelView {
  id: string;
  name: string;
  createdAt: string;
  deletedAt: string | null;
  connections: TunnelConnection[];
}

export const TUNNEL_SORT_KEYS = ['name', 'id', 'createdAt', 'deletedAt', 'numConnections'] as const;
export type TunnelSortKey = (typeof TUNNEL_SORT_KEYS)[number];

const view = (t: Tunnel, connections: TunnelConnection[]): TunnelView => ({
  id: t.id,
  name: t.name,
  createdAt: t.createdAt,
  deletedAt: t.deletedAt,
  connections,
});

/** A live tunnel by ID or name, as every TUNNEL argument takes it. */
export async function resolveTunnel(store: Store, ref: string): Promise<Tunnel> {
  const tunnel = isUuid(ref) ? await store.tunnels.byId(ref.toLowerCase()) : await store.tunnels.byLiveName(ref);
  if (!tunnel || tunnel.deletedAt) {
    throw new OxyError('OXY_ERR_TUNNEL_NOT_FOUND', `${ref} is neither the ID nor the name of any of your tunnels`);
  }
  return tunnel;
}

export interface CreatedTunnel {
  tunnel: TunnelView;
  credentialsFile: string;
}

/** Records a tunnel and writes its credentials file; if the file cannot be written, no tunnel is recorded. */
export async function createTunnel(
  store: Store,
  input: { name: string; secret?: string; credentialsFile?: string; endpoint?: string },
): Promise<CreatedTunnel> {
  const name = input.name;
  if (!name.trim()) throw new OxyError('OXY_ERR_INVALID_NAME', 'A tunnel name cannot be empty.');
  if (isUuid(name)) {
    throw new OxyError('OXY_ERR_INVALID_NAME', `${name} is a UUID; a tunnel name cannot be a UUID, because TUNNEL arguments take either.`);
  }
  const secret = tunnelSecret(input.secret);
  const tunnel: Tunnel = { id: newId(), name, secret, createdAt: nowRfc3339(), deletedAt: null };
  const file = input.credentialsFile ?? credentialsPath(store.home, tunnel.id);
  if (existsSync(file)) {
    throw new OxyError('OXY_ERR_CREDENTIALS_EXIST', `Tunnel credentials file '${file}' already exists. Choose another --credentials-file.`);
  }
  const creds: TunnelCredentials = {
    AccountTag: store.accountTag,
    TunnelSecret: secret,
    TunnelID: tunnel.id,
    Endpoint: input.endpoint ?? '',
  };
  const exists = () => new OxyError('OXY_ERR_TUNNEL_EXISTS', `Create Tunnel API call failed: tunnel with name already exists`, { apiCode: 1013 });
  try {
    await store.write(async () => {
      if (await store.tunnels.byLiveName(name)) throw exists();
      await store.tunnels.insert(tunnel);
      // Inside the transaction: a failed write rolls the row back.
      writeCredentialsFile(file, creds);
    });
  } catch (err) {
    // The commit itself failed after the file was written: no tunnel, so no file either.
    if ((await store.tunnels.byId(tunnel.id)) === undefined) rmSync(file, { force: true });
    if (isUniqueViolation(err)) throw exists();
    throw err;
  }
  return { tunnel: view(tunnel, []), credentialsFile: file };
}

export async function listTunnels(store: Store, filter: TunnelFilter, sort: { by?: TunnelSortKey; invert?: boolean } = {}): Promise<TunnelView[]> {
  const connections = await store.tunnels.connectionsByTunnel();
  const tunnels = (await store.tunnels.list(filter)).map((t) => view(t, connections.get(t.id) ?? []));
  const by = sort.by ?? 'name';
  const key = (t: TunnelView): string | number => (by === 'numConnections' ? t.connections.length : by === 'deletedAt' ? (t.deletedAt ?? '') : t[by]);
  tunnels.sort((a, b) => {
    const ka = key(a);
    const kb = key(b);
    return ka < kb ? -1 : ka > kb ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
  });
  return sort.invert ? tunnels.reverse() : tunnels;
}

export async function tunnelInfo(store: Store, ref: string): Promise<TunnelView> {
  const t = await resolveTunnel(store, ref);
  return view(t, await store.tunnels.connections(t.id));
}

export interface TunnelDeletion {
  tunnel: TunnelView;
  deletedRoutes: number;
  deletedHostnames: number;
}

/**
 * Deletes tunnels all-or-nothing. A tunnel with live connections or routes is kept
 * unless `force`, which also removes its routes, hostnames and connection records.
 */
export async function deleteTunnels(store: Store, refs: string[], options: { force?: boolean } = {}): Promise<TunnelDeletion[]> {
  const deletions = await store.write(() =>
    sequentially(refs, async (ref) => {
      const t = await resolveTunnel(store, ref);
      const connections = await store.tunnels.connections(t.id);
      const routes = await store.routes.countLiveForTunnel(t.id);
      if (!options.force && connections.length > 0) {
        throw new OxyError(
          'OXY_ERR_TUNNEL_ACTIVE',
          `Cannot delete tunnel ${t.name} because it has active connections. To see connections run 'oxyctl tunnel info ${t.name}'. ` +
            `If you believe this is not the case, run 'oxyctl tunnel cleanup ${t.name}' and try again, or use --force.`,
        );
      }
      if (!options.force && routes > 0) {
        throw new OxyError(
          'OXY_ERR_TUNNEL_HAS_ROUTES',
          `Cannot delete tunnel ${t.name} because ${routes} IP route(s) point to it. ` +
            `Delete them with 'oxyctl tunnel route ip delete', or use --force to delete them with the tunnel.`,
        );
      }
      const at = nowRfc3339();
      const deletedRoutes = await store.routes.softDeleteForTunnel(t.id, at);
      const deletedHostnames = await store.hostnames.softDeleteForTunnel(t.id, at);
      await store.tunnels.forgetConnections(t.id);
      await store.tunnels.softDelete(t.id, at);
      return { tunnel: view((await store.tunnels.byId(t.id))!, []), deletedRoutes, deletedHostnames };
    }),
  );
  // As cloudflared does: the secret of a deleted tunnel is useless, so its default file goes too.
  for (const d of deletions) rmSync(credentialsPath(store.home, d.tunnel.id), { force: true });
  return deletions;
}

export async function tunnelCredentials(store: Store, ref: string, endpoint = ''): Promise<TunnelCredentials> {
  const t = await resolveTunnel(store, ref);
  return { AccountTag: store.accountTag, TunnelSecret: t.secret, TunnelID: t.id, Endpoint: endpoint };
}

export async function tunnelToken(store: Store, ref: string, edge?: { endpoint?: string; caPin?: string }): Promise<string> {
  const c = await tunnelCredentials(store, ref);
  return encodeToken({ a: c.AccountTag, s: c.TunnelSecret, t: c.TunnelID, e: edge?.endpoint || undefined, p: edge?.caPin });
}

/** Forgets the recorded connections of tunnels (cloudflared's `tunnel cleanup`). */
export function cleanupTunnels(store: Store, refs: string[]): Promise<{ tunnel: TunnelView; forgotten: number }[]> {
  return store.write(() =>
    sequentially(refs, async (ref) => {
      const t = await resolveTunnel(store, ref);
      return { tunnel: view(t, []), forgotten: await store.tunnels.forgetConnections(t.id) };
    }),
  );
}
