/**
 * The shared backend: PostgreSQL through node-postgres. Several edges and CLIs on other
 * hosts use one database; writers are serialized with a transaction-level advisory lock
 * (the same one-writer-at-a-time rule SQLite's IMMEDIATE transactions give), every write
 * transaction NOTIFYs, and edges LISTEN instead of polling.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import pg from 'pg';
import { loadMigrations, migrationsDir, storeTooNew, type Migration } from './migrate.js';
import { toPositional, type Driver, type Params } from './sql.js';

/** pg_advisory_xact_lock key of the store's one writer lock ("oxy" 7844). */
const WRITE_LOCK = 0x6f78_7844;
/** The channel write transactions notify and edges listen on. */
export const CHANGES_CHANNEL = 'oxy_store_changes';

const RECONNECT_MIN_MS = 100;
const RECONNECT_MAX_MS = 5_000;

/** The URL without its password, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/:[^:@/]*@/, ':***@');
  }
}

type Queryable = pg.Pool | pg.PoolClient | pg.Client;

export class PostgresDriver implements Driver {
  readonly dialect = 'postgres' as const;
  readonly displayUrl: string;
  readonly #pool: pg.Pool;
  readonly #tx = new AsyncLocalStorage<pg.PoolClient>();
  readonly #statements = new Map<string, { name: string; text: string; names: string[] }>();

  constructor(
    readonly url: string,
    options: { onError?: (err: Error) => void } = {},
  ) {
    this.displayUrl = redactUrl(url);
    this.#pool = new pg.Pool({ connectionString: url, max: 4, connectionTimeoutMillis: 10_000, idleTimeoutMillis: 10_000 });
    // An idle client whose server went away: the next query gets a fresh one.
    this.#pool.on('error', (err) => options.onError?.(err));
  }

  #statement(sql: string) {
    let s = this.#statements.get(sql);
    if (!s) {
      // A named statement is prepared once per connection.
      s = { name: `oxy_${this.#statements.size}`, ...toPositional(sql) };
      this.#statements.set(sql, s);
    }
    return s;
  }

  async #query<T>(sql: string, params: Params = {}, on?: Queryable): Promise<pg.QueryResult<T & pg.QueryResultRow>> {
    const s = this.#statement(sql);
    const values = s.names.map((n) => {
      if (!(n in params)) throw new Error(`missing SQL parameter @${n}`);
      return params[n];
    });
    const client = on ?? this.#tx.getStore() ?? this.#pool;
    return client.query<T & pg.QueryResultRow>({ name: s.name, text: s.text, values });
  }

  async all<T>(sql: string, params?: Params): Promise<T[]> {
    return (await this.#query<T>(sql, params)).rows;
  }

  async get<T>(sql: string, params?: Params): Promise<T | undefined> {
    return (await this.#query<T>(sql, params)).rows[0];
  }

  async run(sql: string, params?: Params): Promise<number> {
    return (await this.#query(sql, params)).rowCount ?? 0;
  }

  async transaction<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#tx.getStore()) return fn();
    return this.#withLockedTransaction(async (client) => {
      const result = await this.#tx.run(client, fn);
      // Delivered to every listener when (and only if) the transaction commits.
      await client.query(`NOTIFY ${CHANGES_CHANNEL}`);
      return result;
    });
  }

  async #withLockedTransaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.#pool.connect();
    let broken = false;
    try {
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock($1)', [WRITE_LOCK]);
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => (broken = true));
      throw err;
    } finally {
      client.release(broken);
    }
  }

  async schemaVersion(): Promise<number> {
    const exists = await this.#pool.query<{ t: string | null }>("SELECT to_regclass('oxy_schema') AS t");
    if (!exists.rows[0]?.t) return 0;
    return (await this.#pool.query<{ version: number }>('SELECT version FROM oxy_schema')).rows[0]?.version ?? 0;
  }

  /** Each migration in its own transaction under the writer lock, re-reading the version first. */
  async migrate(migrations: Migration[] = loadMigrations(migrationsDir('postgres'))): Promise<boolean> {
    const latest = migrations.length;
    let applied = false;
    for (;;) {
      const done = await this.#withLockedTransaction(async (client) => {
        await client.query('CREATE TABLE IF NOT EXISTS oxy_schema (version INTEGER NOT NULL)');
        const row = (await client.query<{ version: number }>('SELECT version FROM oxy_schema')).rows[0];
        if (!row) await client.query('INSERT INTO oxy_schema (version) VALUES (0)');
        const current = row?.version ?? 0;
        if (current > latest) throw storeTooNew(this.displayUrl, current, latest);
        if (current === latest) return true;
        await client.query(migrations[current].sql());
        await client.query('UPDATE oxy_schema SET version = $1', [current + 1]);
        applied = true;
        return false;
      });
      if (done) return applied;
    }
  }

  /**
   * LISTENs on a connection of its own. When it drops, reconnects with backoff and then
   * calls `onChange` once: whatever changed while it was away is picked up by a full reload.
   */
  async watch(onChange: () => void, options: { onError?: (err: Error) => void } = {}): Promise<() => Promise<void>> {
    let stopped = false;
    let client: pg.Client | undefined;
    let delay = RECONNECT_MIN_MS;
    let timer: NodeJS.Timeout | undefined;
    const connect = async (): Promise<void> => {
      const c = new pg.Client({ connectionString: this.url, connectionTimeoutMillis: 10_000, keepAlive: true });
      let lost = false;
      const onLost = (err?: Error) => {
        if (lost) return;
        lost = true;
        c.end().catch(() => undefined);
        // A connection that never came up is retried by connect()'s caller.
        if (client !== c) return;
        if (err) options.onError?.(err);
        client = undefined;
        if (!stopped) retry();
      };
      c.on('error', onLost);
      c.on('end', () => onLost());
      c.on('notification', () => onChange());
      try {
        await c.connect();
        await c.query(`LISTEN ${CHANGES_CHANNEL}`);
      } catch (err) {
        onLost();
        throw err;
      }
      if (stopped) {
        await c.end();
        return;
      }
      client = c;
      delay = RECONNECT_MIN_MS;
    };
    const retry = () => {
      timer = setTimeout(() => {
        connect().then(
          () => !stopped && onChange(),
          (err: Error) => {
            options.onError?.(err);
            delay = Math.min(delay * 2, RECONNECT_MAX_MS);
            if (!stopped) retry();
          },
        );
      }, delay);
      timer.unref();
    };
    await connect();
    return async () => {
      stopped = true;
      clearTimeout(timer);
      await client?.end().catch(() => undefined);
    };
  }

  async close(): Promise<void> {
    await this.#pool.end();
  }
}
