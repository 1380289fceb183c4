/**
 * The documents `--output json|yaml` prints, with cloudflared's field names so scripts
 * written against cloudflared read them unchanged. Commands return these from run().
 */
import type { DetailedRoute, TunnelConnection, Vnet } from '../store/index.js';
import type { TunnelView } from './tunnels.js';

export interface VnetDocument {
  id: string;
  comment: string;
  name: string;
  is_default_network: boolean;
  created_at: string;
  deleted_at: string | null;
}

export const vnetDocument = (v: Vnet): VnetDocument => ({
  id: v.id,
  comment: v.comment,
  name: v.name,
  is_default_network: v.isDefault,
  created_at: v.createdAt,
  deleted_at: v.deletedAt,
});

export interface ConnectionDocument {
  id: string;
  colo_name: string;
  is_pending_reconnect: boolean;
  origin_ip: string;
  opened_at: string;
  connector_id: string;
  conn_index: number;
  protocol: string;
  client_version: string;
  arch: string;
}

export const connectionDocument = (c: TunnelConnection): ConnectionDocument => ({
  id: c.id,
  colo_name: c.edgeLocation,
  is_pending_reconnect: false,
  origin_ip: c.originIp,
  opened_at: c.openedAt,
  connector_id: c.connectorId,
  conn_index: c.connIndex,
  protocol: c.protocol,
  client_version: c.clientVersion,
  arch: c.arch,
});

export interface TunnelDocument {
  id: string;
  name: string;
  created_at: string;
  deleted_at: string | null;
  connections: ConnectionDocument[];
}

export const tunnelDocument = (t: TunnelView): TunnelDocument => ({
  id: t.id,
  name: t.name,
  created_at: t.createdAt,
  deleted_at: t.deletedAt,
  connections: t.connections.map(connectionDocument),
});

/** cloudflared's `tunnel info -o json` (cmd/cloudflared/tunnel/info.go): connectors, each with its connections. */
export interface TunnelInfoDocument {
  id: string;
  name: string;
  createdAt: string;
  conns: {
    id: string;
    features: string[];
    version: string;
    arch: string;
    run_at: string;
    conns: { colo_name: string; id: string; is_pending_reconnect: boolean; origin_ip: string; opened_at: string }[];
  }[];
}

export function tunnelInfoDocument(t: TunnelView): TunnelInfoDocument {
  const connectors = new Map<string, TunnelInfoDocument['conns'][number]>();
  for (const c of [...t.connections].sort((a, b) => a.connIndex - b.connIndex)) {
    let connector = connectors.get(c.connectorId);
    if (!connector) {
      connector = { id: c.connectorId, features: [], version: c.clientVersion, arch: c.arch, run_at: c.openedAt, conns: [] };
      connectors.set(c.connectorId, connector);
    }
    if (c.openedAt < connector.run_at) connector.run_at = c.openedAt;
    connector.conns.push({ colo_name: c.edgeLocation, id: c.id, is_pending_reconnect: false, origin_ip: c.originIp, opened_at: c.openedAt });
  }
  return { id: t.id, name: t.name, createdAt: t.createdAt, conns: [...connectors.values()] };
}

export interface RouteDocument {
  id: string;
  network: string;
  tunnel_id: string;
  virtual_network_id: string;
  comment: string;
  created_at: string;
  deleted_at: string | null;
  tunnel_name: string;
  virtual_network_name: string;
}

export const routeDocument = (r: DetailedRoute): RouteDocument => ({
  id: r.id,
  network: r.network,
  tunnel_id: r.tunnelId,
  virtual_network_id: r.vnetId,
  comment: r.comment,
  created_at: r.createdAt,
  deleted_at: r.deletedAt,
  tunnel_name: r.tunnelName,
  virtual_network_name: r.vnetName,
});

/** cloudflared's CONNECTIONS cell: "2xfra, 2xlhr" — connections counted per edge location. */
export function connectionsCell(connections: { colo_name: string }[]): string {
  const perColo = new Map<string, number>();
  for (const c of connections) perColo.set(c.colo_name, (perColo.get(c.colo_name) ?? 0) + 1);
  return [...perColo.keys()]
    .sort()
    .map((colo) => `${perColo.get(colo)}x${colo}`)
    .join(', ');
}
