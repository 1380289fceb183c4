/**
 * What a running edge knows of the store, in memory: live tunnels' and devices' secrets,
 * vnets, public hostnames and the IP route table. The data plane reads only this, never
 * the database. Changes made elsewhere (the CLI, other hosts) reach it through the store's
 * watch — SQLite: a `data_version` poll; PostgreSQL: LISTEN/NOTIFY, and a full reload after
 * a lost connection comes back — and the whole view is rebuilt, then swapped in at once.
 * A rebuild that fails keeps the last view, and the next change (or poll) tries again.
 *
 * Heartbeats change no data (PostgreSQL does not NOTIFY them), so which edges hold which
 * tunnels is also re-read on its own every heartbeat interval, off the request path: an edge
 * that died (or stopped answering) leaves the holders once its heartbeat is stale, instead
 * of at the next change of the store.
 */
import { EventEmitter } from 'node:events';
import { RouteTable } from '../../core/route-table.js';
import { matchHost } from '../../core/host-match.js';
import { findVnet, type VnetLookup } from '../../core/vnets.js';
import type { VirtualNetwork } from '../hooks/types.js';
import type { DetailedRoute, Store, TunnelHolder, Vnet } from '../../store/index.js';
import type { Logger } from '../observe/log.js';
import { EDGE_HEARTBEAT_MS } from '../../store/edges.js';

/** How often a SQLite store is polled for other processes' commits (a fallback: a write to its WAL file wakes the view at once). `OXY_STORE_POLL_MS` lengthens it in tests of that wake. */
export const STORE_POLL_MS = Number(process.env.OXY_STORE_POLL_MS) || 250;

interface Snapshot {
  hostnames: Map<string, string>;
  wildcards: [suffix: string, tunnelId: string][];
  routes: RouteTable<DetailedRoute>;
  routesByTunnel: Map<string, { vnetId: string; network: string }[]>;
  routesByVnet: Map<string, { vnetId: string; network: string }[]>;
  vnets: VnetLookup;
  tunnelSecrets: Map<string, Buffer>;
  deviceSecrets: Map<string, Buffer>;
  /** Devices enrolled for some vnets only (`warp enroll --vnet`). */
  deviceVnets: Map<string, Set<string>>;
  /** The live edges holding connections of each tunnel (where to forward it). */
  holders: Map<string, TunnelHolder[]>;
}

const EMPTY: Snapshot = {
  hostnames: new Map(),
  wildcards: [],
  routes: new RouteTable<DetailedRoute>([]),
  routesByTunnel: new Map(),
  routesByVnet: new Map(),
  vnets: memoryVnets([]),
  tunnelSecrets: new Map(),
  deviceSecrets: new Map(),
  deviceVnets: new Map(),
  holders: new Map(),
};

export class StoreView extends EventEmitter<{ reload: []; holders: [] }> {
  #s = EMPTY;
  #holdersTimer?: NodeJS.Timeout;
  /** Full rebuilds so far: a holders read that overlapped one is dropped (the rebuild read them too). */
  #loads = 0;
  #stopWatch?: Promise<() => Promise<void>>;
  /** The reload in flight, and whether another change arrived meanwhile. */
  #loading?: Promise<void>;
  #again = false;
  #failing = false;

  constructor(
    readonly store: Store,
    private readonly pollMs = STORE_POLL_MS,
    private readonly log?: Logger,
    private readonly holdersMs = EDGE_HEARTBEAT_MS,
  ) {
    super();
  }

  /** Loads the view, then follows the store's changes. */
  async start(): Promise<void> {
    await this.refresh();
    this.#stopWatch ??= this.store.watch(() => void this.refresh().catch(() => undefined), {
      pollMs: this.pollMs,
      onError: (err) => this.log?.warn({ err }, 'Lost the store connection; reconnecting (serving the last view meanwhile)'),
    });
    await this.#stopWatch;
    this.#holdersTimer ??= setInterval(() => void this.#refreshHolders(), this.holdersMs).unref();
  }

  /** Re-reads the holders alone (who is live changes with heartbeats, which notify nothing). */
  async #refreshHolders(): Promise<void> {
    if (this.#loading) return;
    const loads = this.#loads;
    let rows: TunnelHolder[];
    try {
      rows = await this.store.edges.holders();
    } catch {
      return; // The full reload's own error handling reports an unreadable store.
    }
    if (this.#loading || loads !== this.#loads) return;
    this.#s = { ...this.#s, holders: groupHolders(rows) };
    this.emit('holders');
  }

  async stop(): Promise<void> {
    clearInterval(this.#holdersTimer);
    this.#holdersTimer = undefined;
    const stop = this.#stopWatch;
    this.#stopWatch = undefined;
    await (await stop?.catch(() => undefined))?.();
  }

  /**
   * Rebuilds the view now. Writes made through this process's own SQLite connection (the
   * dashboard's) do not move `data_version`, so their writer calls this.
   */
  reload(): Promise<void> {
    return this.refresh();
  }

  /**
   * Brings the view up to date before a registration is checked, so a tunnel deleted a moment
   * ago is refused at once: SQLite's `data_version` is read (no lock); PostgreSQL's
   * notifications keep the view current, so nothing is awaited there.
   */
  async settle(): Promise<void> {
    if (this.store.driver.changed?.()) await this.refresh().catch(() => undefined);
  }

  /**
   * Rebuilds the view from the store. Changes arriving during a rebuild coalesce into one
   * more rebuild after it; until a rebuild completes, the previous view keeps serving.
   */
  refresh(): Promise<void> {
    if (this.#loading) {
      this.#again = true;
      return this.#loading;
    }
    const run = async (): Promise<void> => {
      do {
        this.#again = false;
        try {
          this.#s = await this.#load();
          this.#loads++;
          if (this.#failing) this.log?.info('Store readable again');
          this.#failing = false;
        } catch (err) {
          if (!this.#failing) this.log?.warn({ err }, 'Could not read the store; serving the last view until it can be read');
          this.#failing = true;
          throw err;
        }
        this.emit('reload');
      } while (this.#again);
    };
    this.#loading = run().finally(() => (this.#loading = undefined));
    return this.#loading;
  }

  async #load(): Promise<Snapshot> {
    const [hostnames, routes, vnets, tunnels, devices, deviceVnets, holderRows] = await Promise.all([
      this.store.hostnames.allLive(),
      this.store.routes.allLive(),
      this.store.vnets.list(),
      this.store.tunnels.list(),
      this.store.devices.list(),
      this.store.devices.allVnetRestrictions(),
      this.store.edges.holders(),
    ]);
    const holders = groupHolders(holderRows);
    const exact = new Map<string, string>();
    const wildcards: [string, string][] = [];
    for (const h of hostnames) {
      if (h.hostname.startsWith('*.')) wildcards.push([h.hostname, h.tunnelId]);
      else exact.set(h.hostname, h.tunnelId);
    }
    // Most specific wildcard first.
    wildcards.sort((a, b) => b[0].length - a[0].length);
    const groupBy = (key: (r: DetailedRoute) => string) => {
      const groups = new Map<string, { vnetId: string; network: string }[]>();
      for (const r of routes) {
        const list = groups.get(key(r)) ?? [];
        list.push({ vnetId: r.vnetId, network: r.network });
        groups.set(key(r), list);
      }
      return groups;
    };
    const routesByVnet = groupBy((r) => r.vnetId);
    for (const list of routesByVnet.values()) list.sort((a, b) => (a.network < b.network ? -1 : a.network > b.network ? 1 : 0));
    return {
      hostnames: exact,
      wildcards,
      routes: new RouteTable(routes),
      routesByTunnel: groupBy((r) => r.tunnelId),
      routesByVnet,
      vnets: memoryVnets(vnets),
      tunnelSecrets: new Map(tunnels.map((t) => [t.id, Buffer.from(t.secret, 'base64')])),
      deviceSecrets: new Map(devices.map((d) => [d.id, Buffer.from(d.secret, 'base64')])),
      deviceVnets,
      holders,
    };
  }

  /** Whether a live edge held any tunnel connection at the last reload. */
  holdsAnything(edgeId: string): boolean {
    for (const list of this.#s.holders.values()) if (list.some((h) => h.edgeId === edgeId)) return true;
    return false;
  }

  /** The live edges (as of the last reload) that hold connections of a tunnel. */
  holdersOf(tunnelId: string): readonly TunnelHolder[] {
    return this.#s.holders.get(tunnelId) ?? [];
  }

  /** The tunnel serving a public hostname (exact name first, then the longest `*.` pattern). */
  tunnelForHost(host: string): string | undefined {
    const name = host.toLowerCase().replace(/:\d+$/, '').replace(/\.$/, '');
    return this.#s.hostnames.get(name) ?? this.#s.wildcards.find(([pattern]) => matchHost(pattern, name))?.[1];
  }

  get routes(): RouteTable<DetailedRoute> {
    return this.#s.routes;
  }

  /**
   * The vnet an on-ramp's reference names (ID or name; '' or undefined: the default), as of
   * the last reload: core's one rule (findVnet), over memory. Undefined: no such live vnet.
   */
  vnet(ref: string | undefined): VirtualNetwork | undefined {
    const vnet = findVnet(this.#s.vnets, ref);
    return vnet && { id: vnet.id, name: vnet.name };
  }

  /** vnet(ref)'s ID. */
  vnetId(ref: string | undefined): string | undefined {
    return this.vnet(ref)?.id;
  }

  /** A live vnet's name. */
  vnetName(vnetId: string): string | undefined {
    return this.#s.vnets.byId(vnetId)?.name;
  }

  /** The live routes of a vnet (what a device sends into its tunnel), in network order. */
  routesInVnet(vnetId: string): { vnetId: string; network: string }[] {
    return this.#s.routesByVnet.get(vnetId) ?? [];
  }

  /** The private networks a tunnel serves, per vnet: what its connectors may off-ramp to. */
  routesForTunnel(tunnelId: string): { vnetId: string; network: string }[] {
    return this.#s.routesByTunnel.get(tunnelId) ?? [];
  }

  /** A live tunnel's secret; a deleted tunnel stops registering at the next reload. */
  tunnelSecret(tunnelId: string): Buffer | undefined {
    return this.#s.tunnelSecrets.get(tunnelId);
  }

  /** Whether a tunnel existed, not deleted, at the last reload. */
  isLiveTunnel(tunnelId: string): boolean {
    return this.#s.tunnelSecrets.has(tunnelId);
  }

  /** An enrolled device's secret (`warp enroll`). */
  deviceSecret(deviceId: string): Buffer | undefined {
    return this.#s.deviceSecrets.get(deviceId);
  }

  /** A live enrolled device's secret as of the last reload (per-datagram paths). */
  enrolledDevice(deviceId: string): Buffer | undefined {
    return this.#s.deviceSecrets.get(deviceId);
  }

  /** Whether an enrolled device may use a vnet (`warp enroll --vnet`; none given: every one). */
  deviceMayUse(deviceId: string, vnetId: string): boolean {
    const allowed = this.#s.deviceVnets.get(deviceId);
    return allowed === undefined || allowed.has(vnetId);
  }

  /** How many devices are enrolled (as of the last reload). */
  get enrolledDevices(): number {
    return this.#s.deviceSecrets.size;
  }

  get accountTag(): string {
    return this.store.accountTag;
  }
}

function groupHolders(rows: TunnelHolder[]): Map<string, TunnelHolder[]> {
  const holders = new Map<string, TunnelHolder[]>();
  for (const h of rows) holders.set(h.tunnelId, [...(holders.get(h.tunnelId) ?? []), h]);
  return holders;
}

/** The live vnets of one reload, looked up as the store's repository would. */
function memoryVnets(live: Vnet[]): VnetLookup {
  const byId = new Map(live.map((v) => [v.id, v]));
  const byName = new Map(live.map((v) => [v.name, v]));
  const byDefault = live.find((v) => v.isDefault);
  return { byId: (id) => byId.get(id), byLiveName: (name) => byName.get(name), defaultVnet: () => byDefault };
}
