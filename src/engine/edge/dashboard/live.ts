/**
 * What the dashboard shows live: once a second, while at least one browser watches the
 * event stream, the traffic counters are sampled into rates and sent with the tunnels'
 * and devices' state as one Server-Sent Event (`event: update`). Nothing runs while no one
 * watches; a stream whose session ended (token replaced, logout) is closed at the next tick.
 */
import type { ServerResponse } from 'node:http';
import { tunnelOverview } from '../../../core/dashboard.js';
import type { DashboardUpdate as Update, DeviceOverview, TrafficSnapshot, TunnelOverview } from '../../../core/dashboard-wire.js';

export type { DeviceOverview, TrafficSnapshot, Update };
import type { Store } from '../../../store/index.js';
import type { IpContext } from '../../flow/types.js';
import type { ConnectedDevice } from '../server.js';
import type { StoreView } from '../store-view.js';
import type { TrafficRecorder } from '../traffic.js';

export const TICK_MS = 1000;

export interface LiveSources {
  store: Store;
  view: StoreView;
  traffic: TrafficRecorder;
  devices: Map<string, ConnectedDevice>;
  /** Active IP flows per scope (the IP path's flow table); unset: the edge has no IP path. */
  flows?: () => { context: IpContext; flows: number }[];
  /** Quick tunnel: the tunnel serving hosts without a hostname route. */
  defaultTunnel?: string;
}

interface Watcher {
  res: ServerResponse;
  /** Whether the caller may still watch (its session or token is current). */
  allowed: () => Promise<boolean>;
}

export class LiveFeed {
  readonly #watchers = new Set<Watcher>();
  readonly #seen = new Map<string, number>();
  #timer?: NodeJS.Timeout;
  #prev = { at: Date.now(), hosts: new Map<string, { requests: number; bytes: number }>(), errors: new Map<string, number>() };
  #last?: TrafficSnapshot;

  constructor(private readonly s: LiveSources) {}

  tunnels(): Promise<TunnelOverview[]> {
    return tunnelOverview(this.s.store, this.#seen);
  }

  async devices(): Promise<DeviceOverview[]> {
    const [restrictions, devices, vnets] = await Promise.all([
      this.s.store.devices.allVnetRestrictions(),
      this.s.store.devices.list(),
      this.s.store.vnets.list(),
    ]);
    // From the store, not the edge's view: a vnet made a moment ago by the CLI has its name here
    // before the view's next reload.
    const names = new Map(vnets.map((v) => [v.id, v.name]));
    const vnetName = (id: string) => names.get(id) ?? this.s.view.vnetName(id) ?? id;
    return devices.map((d) => {
      const live = this.s.devices.get(d.id);
      const vnetId = live?.vnet === undefined ? undefined : this.s.view.vnetId(live.vnet);
      return {
        id: d.id,
        name: d.name,
        created_at: d.createdAt,
        connected: live !== undefined,
        origin_ip: live?.ip ?? null,
        protocol: live?.protocol ?? null,
        connected_since: live ? live.since.toISOString() : null,
        vnet_id: vnetId ?? null,
        vnet_name: vnetId ? vnetName(vnetId) : null,
        allowed_vnets: [...(restrictions.get(d.id) ?? [])].map(vnetName).sort(),
      };
    });
  }

  /** The latest traffic sample (taken now when no stream is sampling). */
  async traffic(): Promise<TrafficSnapshot> {
    return this.#timer && this.#last ? this.#last : this.#sample(await this.tunnels());
  }

  /** Streams updates to `res` until it closes, or until `allowed()` says the caller's access ended. */
  async watch(res: ServerResponse, allowed: () => Promise<boolean>): Promise<void> {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', 'x-accel-buffering': 'no' });
    const watcher = { res, allowed };
    this.#watchers.add(watcher);
    res.on('error', () => undefined);
    res.on('close', () => {
      this.#watchers.delete(watcher);
      if (this.#watchers.size === 0) this.#stopTimer();
    });
    // Reconnect after 2 s if the stream drops; first update at once.
    res.write('retry: 2000\n\n');
    this.#timer ??= setInterval(() => void this.#tick().catch(() => undefined), TICK_MS).unref();
    this.#send(watcher, await this.#update());
  }

  close(): void {
    this.#stopTimer();
    for (const w of this.#watchers) w.res.end();
    this.#watchers.clear();
  }

  #stopTimer(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  async #tick(): Promise<void> {
    const update = await this.#update();
    for (const w of [...this.#watchers]) {
      if (!(await w.allowed())) w.res.end();
      else this.#send(w, update);
    }
  }

  #send(w: Watcher, data: string): void {
    w.res.write(data);
  }

  async #update(): Promise<string> {
    const [tunnels, devices] = await Promise.all([this.tunnels(), this.devices()]);
    const update: Update = { traffic: (this.#last = this.#sample(tunnels)), tunnels, devices };
    return `event: update\ndata: ${JSON.stringify(update)}\n\n`;
  }

  /** Rates since the previous sample, per hostname and summed per tunnel. */
  #sample(tunnels: TunnelOverview[]): TrafficSnapshot {
    const now = Date.now();
    const seconds = Math.max(0.001, (now - this.#prev.at) / 1000);
    const perTunnel = new Map<string, { requests_total: number; requests_per_s: number; bytes_per_s: number }>();
    for (const t of tunnels) perTunnel.set(t.id, { requests_total: 0, requests_per_s: 0, bytes_per_s: 0 });
    const hosts = new Map<string, { requests: number; bytes: number }>();
    const hostnames: TrafficSnapshot['hostnames'] = [];
    for (const [host, t] of this.s.traffic.hosts) {
      const before = this.#prev.hosts.get(host) ?? { requests: 0, bytes: 0 };
      hosts.set(host, { requests: t.requests, bytes: t.bytes });
      const tunnelId = this.s.view.tunnelForHost(host) ?? this.s.defaultTunnel ?? null;
      const row = {
        hostname: host,
        tunnel_id: tunnelId,
        requests_total: t.requests,
        requests_per_s: (t.requests - before.requests) / seconds,
        bytes_per_s: (t.bytes - before.bytes) / seconds,
      };
      hostnames.push(row);
      const sum = tunnelId ? perTunnel.get(tunnelId) : undefined;
      if (sum) {
        sum.requests_total += row.requests_total;
        sum.requests_per_s += row.requests_per_s;
        sum.bytes_per_s += row.bytes_per_s;
      }
    }
    const errors = [...this.s.traffic.errors].map(([type, total]) => ({
      proxy_status: type,
      total,
      per_s: (total - (this.#prev.errors.get(type) ?? 0)) / seconds,
    }));
    const flowsByVnet = new Map<string, number>();
    for (const { context, flows } of this.s.flows?.() ?? []) flowsByVnet.set(context.vnet, (flowsByVnet.get(context.vnet) ?? 0) + flows);
    const flows = [...flowsByVnet].map(([ref, active]) => {
      const id = this.s.view.vnetId(ref);
      return { vnet_id: id ?? null, vnet_name: (id && this.s.view.vnetName(id)) || ref || '(default)', active };
    });
    this.#prev = { at: now, hosts, errors: new Map(this.s.traffic.errors) };
    return {
      at: new Date(now).toISOString(),
      interval_ms: Math.round(seconds * 1000),
      tunnels: tunnels.map((t) => ({ id: t.id, name: t.name, ...perTunnel.get(t.id)! })),
      hostnames: hostnames.sort((a, b) => (a.hostname < b.hostname ? -1 : 1)),
      flows,
      errors: errors.sort((a, b) => (a.proxy_status < b.proxy_status ? -1 : 1)),
    };
  }
}
