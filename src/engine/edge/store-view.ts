/**
 * What a running edge knows of the store, in memory: live tunnels' secrets, public
 * hostnames and the IP route table. Changes made with the CLI (another process) reach it
 * within one poll: `PRAGMA data_version` moves whenever another connection commits, and
 * only then is the view rebuilt.
 *
 * Traffic never reads the database itself: secrets are looked up in memory after a
 * `data_version` check (one read of the WAL index, which another process's write lock does
 * not block), and a reload that fails keeps the last view and is tried again at the next poll.
 * `data_version` does not move for commits on the edge's own connection: whoever writes there
 * (the dashboard) calls reload().
 */
import { EventEmitter } from 'node:events';
import { RouteTable } from '../../core/route-table.js';
import { matchHost } from '../../core/host-match.js';
import { findVnet, type VnetLookup } from '../../core/vnets.js';
import type { VirtualNetwork } from '../hooks/types.js';
import type { DetailedRoute, Store, Vnet } from '../../store/index.js';
import type { Logger } from '../observe/log.js';

export const STORE_POLL_MS = 250;

export class StoreView extends EventEmitter<{ reload: [] }> {
  #version = -1;
  #timer?: NodeJS.Timeout;
  #hostnames = new Map<string, string>();
  #wildcards: [suffix: string, tunnelId: string][] = [];
  #routes = new RouteTable<DetailedRoute>([]);
  #routesByTunnel = new Map<string, { vnetId: string; network: string }[]>();
  #routesByVnet = new Map<string, { vnetId: string; network: string }[]>();
  #vnets: VnetLookup = memoryVnets([]);
  #tunnelSecrets = new Map<string, Buffer>();
  #devices = new Map<string, Buffer>();
  #deviceVnets = new Map<string, Set<string>>();
  #failing = false;

  constructor(readonly store: Store, private readonly pollMs = STORE_POLL_MS, private readonly log?: Logger) {
    super();
    this.refresh();
  }

  start(): void {
    this.#timer ??= setInterval(() => this.#poll(), this.pollMs).unref();
  }

  /** refresh() for traffic: a store that cannot be read leaves the last view in place. */
  #poll(): void {
    try {
      this.refresh();
      if (this.#failing) this.log?.info('Store readable again');
      this.#failing = false;
    } catch (err) {
      if (!this.#failing) this.log?.warn({ err }, 'Could not read the store; serving the last view until it can be read');
      this.#failing = true;
    }
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /**
   * Rebuilds the view now. Writes made through this process's own store connection (the
   * dashboard's) do not move `data_version`, so their writer calls this.
   */
  reload(): void {
    this.#version = -1;
    this.refresh();
  }

  /** Rebuilds the view if the store changed since the last look; returns whether it did. */
  refresh(): boolean {
    const version = this.store.dataVersion();
    if (version === this.#version) return false;
    this.#version = version;
    const exact = new Map<string, string>();
    const wildcards: [string, string][] = [];
    for (const h of this.store.hostnames.allLive()) {
      if (h.hostname.startsWith('*.')) wildcards.push([h.hostname, h.tunnelId]);
      else exact.set(h.hostname, h.tunnelId);
    }
    // Most specific wildcard first.
    wildcards.sort((a, b) => b[0].length - a[0].length);
    this.#hostnames = exact;
    this.#wildcards = wildcards;
    const routes = this.store.routes.allLive();
    this.#routes = new RouteTable(routes);
    const groupBy = (key: (r: DetailedRoute) => string) => {
      const groups = new Map<string, { vnetId: string; network: string }[]>();
      for (const r of routes) {
        const list = groups.get(key(r)) ?? [];
        list.push({ vnetId: r.vnetId, network: r.network });
        groups.set(key(r), list);
      }
      return groups;
    };
    this.#routesByTunnel = groupBy((r) => r.tunnelId);
    this.#routesByVnet = groupBy((r) => r.vnetId);
    for (const list of this.#routesByVnet.values()) list.sort((a, b) => (a.network < b.network ? -1 : a.network > b.network ? 1 : 0));
    this.#vnets = memoryVnets(this.store.vnets.list());
    this.#tunnelSecrets = new Map(this.store.tunnels.list().map((t) => [t.id, Buffer.from(t.secret, 'base64')]));
    this.#devices = new Map(this.store.devices.list().map((d) => [d.id, Buffer.from(d.secret, 'base64')]));
    this.#deviceVnets = this.store.devices.allVnetRestrictions();
    this.emit('reload');
    return true;
  }

  /** The tunnel serving a public hostname (exact name first, then the longest `*.` pattern). */
  tunnelForHost(host: string): string | undefined {
    const name = host.toLowerCase().replace(/:\d+$/, '').replace(/\.$/, '');
    return this.#hostnames.get(name) ?? this.#wildcards.find(([pattern]) => matchHost(pattern, name))?.[1];
  }

  get routes(): RouteTable<DetailedRoute> {
    return this.#routes;
  }

  /**
   * The vnet an on-ramp's reference names (ID or name; '' or undefined: the default), as of
   * the last reload: core's one rule (findVnet), over memory. Undefined: no such live vnet.
   */
  vnet(ref: string | undefined): VirtualNetwork | undefined {
    const vnet = findVnet(this.#vnets, ref);
    return vnet && { id: vnet.id, name: vnet.name };
  }

  /** vnet(ref)'s ID. */
  vnetId(ref: string | undefined): string | undefined {
    return this.vnet(ref)?.id;
  }

  /** The live routes of a vnet (what a device sends into its tunnel), in network order. */
  routesInVnet(vnetId: string): { vnetId: string; network: string }[] {
    return this.#routesByVnet.get(vnetId) ?? [];
  }

  /** The private networks a tunnel serves, per vnet: what its connectors may off-ramp to. */
  routesForTunnel(tunnelId: string): { vnetId: string; network: string }[] {
    return this.#routesByTunnel.get(tunnelId) ?? [];
  }

  /** A live tunnel's secret; the view is brought up to date first, so a deleted tunnel stops at once. */
  tunnelSecret(tunnelId: string): Buffer | undefined {
    this.#poll();
    return this.#tunnelSecrets.get(tunnelId);
  }

  /** Whether a tunnel existed, not deleted, at the last reload (no store read). */
  isLiveTunnel(tunnelId: string): boolean {
    return this.#tunnelSecrets.has(tunnelId);
  }

  /** An enrolled device's secret (`warp enroll`). */
  deviceSecret(deviceId: string): Buffer | undefined {
    this.#poll();
    return this.#devices.get(deviceId);
  }

  /** A live enrolled device's secret as of the last reload (per-datagram paths: no store read). */
  enrolledDevice(deviceId: string): Buffer | undefined {
    return this.#devices.get(deviceId);
  }

  /** Whether an enrolled device may use a vnet (`warp enroll --vnet`; none given: every one). */
  deviceMayUse(deviceId: string, vnetId: string): boolean {
    const allowed = this.#deviceVnets.get(deviceId);
    return allowed === undefined || allowed.has(vnetId);
  }

  /** How many devices are enrolled (as of the last reload). */
  get enrolledDevices(): number {
    return this.#devices.size;
  }

  get accountTag(): string {
    return this.store.accountTag;
  }
}

/** The live vnets of one reload, looked up as the store's repository would. */
function memoryVnets(live: Vnet[]): VnetLookup {
  const byId = new Map(live.map((v) => [v.id, v]));
  const byName = new Map(live.map((v) => [v.name, v]));
  const byDefault = live.find((v) => v.isDefault);
  return { byId: (id) => byId.get(id), byLiveName: (name) => byName.get(name), defaultVnet: () => byDefault };
}
