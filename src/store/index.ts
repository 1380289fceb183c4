import { type Db, openDb, writeTransaction } from './db.js';
import { HostnameRepository } from './hostnames.js';
import { RouteRepository } from './routes.js';
import { TunnelRepository } from './tunnels.js';
import { VnetRepository } from './vnets.js';
import { DeviceRepository } from './devices.js';
import { DashboardTokenRepository } from './dashboard-tokens.js';

export type { Vnet, VnetFilter } from './vnets.js';
export type { Tunnel, TunnelConnection, TunnelFilter } from './tunnels.js';
export type { Route, DetailedRoute, RouteFilter, NetworkRange } from './routes.js';
export type { HostnameRoute } from './hostnames.js';
export type { Device } from './devices.js';
export type { DashboardToken } from './dashboard-tokens.js';

/** The local store: one SQLite database per data directory, with its repositories. */
export class Store {
  readonly vnets: VnetRepository;
  readonly tunnels: TunnelRepository;
  readonly routes: RouteRepository;
  readonly hostnames: HostnameRepository;
  readonly devices: DeviceRepository;
  readonly dashboardTokens: DashboardTokenRepository;
  readonly accountTag: string;

  constructor(readonly db: Db, readonly home: string) {
    this.vnets = new VnetRepository(db);
    this.tunnels = new TunnelRepository(db);
    this.routes = new RouteRepository(db);
    this.hostnames = new HostnameRepository(db);
    this.devices = new DeviceRepository(db);
    this.dashboardTokens = new DashboardTokenRepository(db);
    this.accountTag = (db.prepare('SELECT account_tag FROM account WHERE id = 1').get() as { account_tag: string }).account_tag;
  }

  static open(home: string): Store {
    return new Store(openDb(home), home);
  }

  /** Runs `fn` as one write transaction: all of it lands, or none of it. */
  write<T>(fn: () => T): T {
    return writeTransaction(this.db, fn);
  }

  /** How long this connection waits for another process's lock before a write fails (OXY_ERR_STORE_BUSY). */
  setBusyTimeout(ms: number): void {
    this.db.pragma(`busy_timeout = ${ms}`);
  }

  /** Changes whenever any connection commits to the database: the edge polls it to reload. */
  dataVersion(): number {
    return this.db.pragma('data_version', { simple: true }) as number;
  }

  close(): void {
    this.db.close();
  }
}
