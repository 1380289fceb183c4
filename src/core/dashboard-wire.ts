/**
 * What the dashboard's JSON API sends (docs/dashboard-api.md): the edge builds these and the
 * browser code (web/dashboard) reads them, so both take the shapes from here. No imports: the
 * front end's type-check sees this file alone.
 */

export type TunnelStatus = 'healthy' | 'degraded' | 'down';

export interface TunnelConnectionOverview {
  id: string;
  connector_id: string;
  conn_index: number;
  edge: string;
  protocol: string;
  origin_ip: string;
  client_version: string;
  arch: string;
  opened_at: string;
  uptime_seconds: number;
}

/** A tunnel as the dashboard shows it: its status, live connections and public hostnames. */
export interface TunnelOverview {
  id: string;
  name: string;
  created_at: string;
  status: TunnelStatus;
  hostnames: string[];
  connections: TunnelConnectionOverview[];
}

export interface DeviceOverview {
  id: string;
  name: string;
  created_at: string;
  connected: boolean;
  origin_ip: string | null;
  protocol: string | null;
  connected_since: string | null;
  vnet_id: string | null;
  vnet_name: string | null;
  /** The vnets it was enrolled for (`warp enroll --vnet`), by name; empty: every vnet. */
  allowed_vnets: string[];
}

export interface TrafficRate {
  requests_total: number;
  requests_per_s: number;
  bytes_per_s: number;
}

export interface TrafficSnapshot {
  at: string;
  interval_ms: number;
  tunnels: ({ id: string; name: string } & TrafficRate)[];
  hostnames: ({ hostname: string; tunnel_id: string | null } & TrafficRate)[];
  flows: { vnet_id: string | null; vnet_name: string; active: number }[];
  errors: { proxy_status: string; total: number; per_s: number }[];
}

/** One Server-Sent Event of the live feed. */
export interface DashboardUpdate {
  traffic: TrafficSnapshot;
  tunnels: TunnelOverview[];
  devices: DeviceOverview[];
}
