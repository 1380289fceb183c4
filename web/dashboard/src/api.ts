/** The dashboard's calls to the edge's JSON API (docs/dashboard-api.md). */

// The shapes the edge sends, declared once beside the code that builds them (type-only: nothing of src/ is bundled).
export type {
  DashboardUpdate as Update,
  DeviceOverview as Device,
  TrafficRate as Rate,
  TrafficSnapshot as Traffic,
  TunnelConnectionOverview as Connection,
  TunnelOverview as Tunnel,
} from '../../../src/core/dashboard-wire.js';

export interface Vnet {
  id: string;
  name: string;
  comment: string;
  is_default_network: boolean;
  created_at: string;
  deleted_at: string | null;
}
export interface Route {
  id: string;
  network: string;
  tunnel_id: string;
  tunnel_name: string;
  virtual_network_id: string;
  virtual_network_name: string;
  comment: string;
  created_at: string;
  deleted_at: string | null;
}
/** A refused call: the API's code and message (the CLI's own words). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

let csrf: string | null = null;

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && csrf) headers['x-csrf-token'] = csrf;
  const res = await fetch(`/api/v1/${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin' });
  const text = await res.text();
  const data = text ? JSON.parse(text) : undefined;
  if (!res.ok) throw new ApiError(res.status, data?.error?.code ?? 'OXY_ERR_UNKNOWN', data?.error?.message ?? `${res.status} ${res.statusText}`);
  return data as T;
}

export async function login(token: string): Promise<void> {
  csrf = (await call<{ csrf_token: string }>('POST', 'login', { token })).csrf_token;
}

/** Whether the browser still has a session (after a reload); picks its CSRF token up again. */
export async function resume(): Promise<boolean> {
  try {
    csrf = (await call<{ csrf_token: string | null }>('GET', 'session')).csrf_token;
    return true;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return false;
    throw err;
  }
}

export async function logout(): Promise<void> {
  await call('DELETE', 'session');
  csrf = null;
}

const q = (params: Record<string, string | undefined>): string => {
  const s = new URLSearchParams(Object.entries(params).filter((e): e is [string, string] => !!e[1])).toString();
  return s ? `?${s}` : '';
};

export const api = {
  vnets: () => call<{ vnets: Vnet[] }>('GET', 'vnets').then((r) => r.vnets),
  addVnet: (v: { name: string; comment?: string; is_default?: boolean }) => call<Vnet>('POST', 'vnets', v),
  deleteVnet: (ref: string, force = false) =>
    call<{ vnet: Vnet; deleted_routes: number }>('DELETE', `vnets/${encodeURIComponent(ref)}${force ? '?force=true' : ''}`),
  routes: (filter: { vnet?: string; tunnel?: string } = {}) => call<{ routes: Route[] }>('GET', `routes${q(filter)}`).then((r) => r.routes),
  addRoute: (r: { network: string; tunnel: string; vnet?: string; comment?: string }) => call<Route>('POST', 'routes', r),
  deleteRoute: (id: string) => call<Route>('DELETE', `routes/${encodeURIComponent(id)}`),
  lookup: (ip: string, vnet?: string) => call<{ ip: string; route: Route | null }>('GET', `route-lookup${q({ ip, vnet })}`),
  revoke: (ref: string) => call<{ id: string; name: string }>('POST', `devices/${encodeURIComponent(ref)}/revoke`),
};
