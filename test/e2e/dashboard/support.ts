/** An edge with its dashboard on loopback, and a small client for the dashboard's API. */
import { request } from 'undici';
import { oxyJson } from '../../helpers/cli.js';
import { OxyProcess, startEdge } from '../../helpers/processes.js';
import { until as sharedUntil } from '../../helpers/until.js';

export interface DashboardEdge {
  edge: OxyProcess;
  tunnelPort: number;
  httpPort: number;
  /** http://127.0.0.1:PORT */
  base: string;
}

export async function startDashboardEdge(home: string, extra: string[] = []): Promise<DashboardEdge> {
  const e = await startEdge(home, ['--dashboard-listen', '127.0.0.1:0', ...extra]);
  const m = await e.edge.waitFor(/Dashboard ready .*url=(http:\/\/127\.0\.0\.1:\d+)\//);
  return { ...e, base: m[1] };
}

export const newToken = async (home: string): Promise<string> => (await oxyJson<{ token: string }>(home, ['edge', 'dashboard-token'])).token;

export interface ApiAnswer<T = any> {
  status: number;
  body: T;
  headers: Record<string, string | string[] | undefined>;
}

/** One API call; `auth` is a bearer token, or a session's cookie (and CSRF token for writes). */
export async function api<T = any>(
  base: string,
  method: string,
  path: string,
  o: { bearer?: string; cookie?: string; csrf?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<ApiAnswer<T>> {
  const headers: Record<string, string> = { ...o.headers };
  if (o.bearer) headers.authorization = `Bearer ${o.bearer}`;
  if (o.cookie) headers.cookie = o.cookie;
  if (o.csrf) headers['x-csrf-token'] = o.csrf;
  if (o.body !== undefined) headers['content-type'] = 'application/json';
  const res = await request(`${base}${path}`, { method: method as 'GET', headers, body: o.body === undefined ? undefined : JSON.stringify(o.body) });
  const text = await res.body.text();
  return { status: res.statusCode, body: (text ? JSON.parse(text) : undefined) as T, headers: res.headers };
}

/** Logs in like the page does: the session cookie and the CSRF token. */
export async function login(base: string, token: string): Promise<{ cookie: string; csrf: string }> {
  const r = await api<{ csrf_token: string }>(base, 'POST', '/api/v1/login', { body: { token } });
  if (r.status !== 200) throw new Error(`login answered ${r.status}: ${JSON.stringify(r.body)}`);
  const setCookie = String(r.headers['set-cookie']);
  return { cookie: setCookie.split(';')[0], csrf: r.body.csrf_token };
}

/** Polls `fn` until it returns a truthy value. */
export const until = <T>(fn: () => Promise<T | undefined | false>, what: string, timeoutMs = 15_000): Promise<T> =>
  sharedUntil(fn, timeoutMs, what, 100) as Promise<T>;
