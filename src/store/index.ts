import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { OxyError } from '../core/errors.js';
import { DashboardTokenRepository } from './dashboard-tokens.js';
import { DeviceRepository } from './devices.js';
import { EdgeRepository } from './edges.js';
import { HostnameRepository } from './hostnames.js';
import { RouteRepository } from './routes.js';
import type { Dialect, Driver } from './sql.js';
import { SqliteDriver } from './sqlite.js';
import { TunnelRepository } from './tunnels.js';
import { VnetRepository } from './vnets.js';

export type { Vnet, VnetFilter } from './vnets.js';
export type { Tunnel, TunnelConnection, TunnelFilter } from './tunnels.js';
export type { Route, DetailedRoute, RouteFilter, NetworkRange } from './routes.js';
export type { HostnameRoute } from './hostnames.js';
export type { Device } from './devices.js';
export type { EdgeRecord, LiveEdge, TunnelHolder } from './edges.js';
export type { DashboardToken } from './dashboard-tokens.js';
export type { Dialect } from './sql.js';
export { isUniqueViolation } from './sql.js';

export const STORE_FILE = 'oxy.db';

/** Where the store is: `sqlite:PATH` or `postgres://user@host/db`. */
export type StoreUrl = { dialect: 'sqlite'; path: string } | { dialect: 'postgres'; url: string };

/** The store URL a command means: `--store`, else `OXY_STORE`, else `fallback`, else `sqlite:$OXY_HOME/oxy.db`. */
export function storeUrlFor(home: string, flag?: string, fallback?: string): string {
  return flag || process.env.OXY_STORE || fallback || `sqlite:${join(home, STORE_FILE)}`;
}

export function parseStoreUrl(text: string): StoreUrl {
  if (text.startsWith('sqlite:')) {
    const path = text.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, '');
    if (path) return { dialect: 'sqlite', path: resolve(path) };
  } else if (/^postgres(ql)?:\/\//.test(text)) {
    return { dialect: 'postgres', url: text };
  }
  throw new OxyError('OXY_ERR_STORE_URL', `${text} is not a store URL. Use sqlite:PATH (the default is sqlite:$OXY_HOME/oxy.db) or postgres://USER@HOST/DB.`);
}

export interface OpenStoreOptions {
  /** The data directory: credentials files, the edge identity, and the SQLite store by default. */
  home: string;
  /** A store URL; default: `sqlite:<home>/oxy.db`. */
  url?: string;
  /** Called when the backend reports an error outside a query (a PostgreSQL connection lost while idle). */
  onError?: (err: Error) => void;
}

/**
 * The control-plane store: vnets, tunnels, routes, hostnames and devices behind one async
 * interface, on SQLite (one host) or PostgreSQL (many edges). One account per store.
 */
export class Store {
  readonly vnets: VnetRepository;
  readonly tunnels: TunnelRepository;
  readonly routes: RouteRepository;
  readonly hostnames: HostnameRepository;
  readonly devices: DeviceRepository;
  readonly dashboardTokens: DashboardTokenRepository;
  readonly edges: EdgeRepository;

  private constructor(
    readonly driver: Driver,
    readonly home: string,
    readonly accountTag: string,
  ) {
    this.vnets = new VnetRepository(driver);
    this.tunnels = new TunnelRepository(driver);
    this.routes = new RouteRepository(driver);
    this.hostnames = new HostnameRepository(driver);
    this.devices = new DeviceRepository(driver);
    this.dashboardTokens = new DashboardTokenRepository(driver);
    this.edges = new EdgeRepository(driver);
  }

  /** Opens (creating if needed) the store, migrated to the latest schema. */
  static async open(o: OpenStoreOptions | string): Promise<Store> {
    const options = typeof o === 'string' ? { home: o } : o;
    const where = parseStoreUrl(options.url ?? storeUrlFor(options.home));
    const driver = await openDriver(where, options.onError);
    try {
      await driver.migrate();
      return new Store(driver, options.home, await accountTag(driver));
    } catch (err) {
      await driver.close().catch(() => undefined);
      throw err;
    }
  }

  get dialect(): Dialect {
    return this.driver.dialect;
  }

  get displayUrl(): string {
    return this.driver.displayUrl;
  }

  /** Runs `fn` as one write transaction: all of it lands, or none of it. */
  write<T>(fn: () => Promise<T>): Promise<T> {
    return this.driver.transaction(fn);
  }

  /**
   * How long this process waits for another's lock before a write fails (OXY_ERR_STORE_BUSY):
   * the edge takes 100 ms where the CLI waits 10 s. SQLite only (PostgreSQL's waits are async).
   */
  setBusyTimeout(ms: number): void {
    this.driver.setBusyTimeout?.(ms);
  }

  /** Calls `onChange` after other processes change the store; resolves to a stop function. */
  watch(onChange: () => void, options?: { pollMs?: number; onError?: (err: Error) => void }): Promise<() => Promise<void>> {
    return this.driver.watch(onChange, options);
  }

  close(): Promise<void> {
    return this.driver.close();
  }
}

/** A backend without the repositories (store administration). */
export async function openDriver(where: StoreUrl, onError?: (err: Error) => void): Promise<Driver> {
  if (where.dialect === 'sqlite') return new SqliteDriver(where.path);
  // Loaded only for PostgreSQL: the SQLite CLI path never reads node-postgres.
  const { PostgresDriver, redactUrl } = await import('./postgres.js');
  const driver = new PostgresDriver(where.url, { onError });
  try {
    await driver.get('SELECT 1 AS ok');
  } catch (err) {
    await driver.close().catch(() => undefined);
    throw new OxyError(
      'OXY_ERR_STORE_UNREACHABLE',
      `Cannot open the store ${redactUrl(where.url)}: ${(err as Error).message || (err as { code?: string }).code}. ` +
        'Check --store / OXY_STORE, and that PostgreSQL runs and accepts this user.',
      { cause: err },
    );
  }
  return driver;
}

/** The store's account tag, drawn once when the store is new (no write on later opens). */
async function accountTag(driver: Driver): Promise<string> {
  const read = () => driver.get<{ account_tag: string }>('SELECT account_tag FROM account WHERE id = 1');
  let row = await read();
  if (!row) {
    // One statement, atomic on its own: the first opener's tag wins.
    await driver.run('INSERT INTO account (id, account_tag) VALUES (1, @tag) ON CONFLICT DO NOTHING', { tag: randomBytes(16).toString('hex') });
    row = await read();
  }
  return row!.account_tag;
}
