/**
 * What repositories run their SQL on: one small async interface over both backends.
 * Statements use named parameters (`@name`) and the SQL both SQLite and PostgreSQL
 * accept; the few places where they differ ask `dialect`. A parameter PostgreSQL cannot
 * type from its context (`@id IS NULL`) carries a cast, `@id::text`, which SQLite drops.
 */
export type SqlValue = string | number | Buffer | null;
export type Params = Record<string, SqlValue>;

export type Dialect = 'sqlite' | 'postgres';

export interface Sql {
  readonly dialect: Dialect;
  all<T>(sql: string, params?: Params): Promise<T[]>;
  get<T>(sql: string, params?: Params): Promise<T | undefined>;
  /** Runs a write; resolves to the number of rows it changed. */
  run(sql: string, params?: Params): Promise<number>;
}

/** A backend: SQL plus transactions, migrations and change notifications. */
export interface Driver extends Sql {
  /** The store URL without its password, for messages. */
  readonly displayUrl: string;
  /**
   * Runs `fn` as one write transaction: all of it lands, or none of it. Writers are
   * serialized store-wide (SQLite: BEGIN IMMEDIATE; PostgreSQL: a transaction-level
   * advisory lock), so a use-case's checks see every earlier commit. Queries `fn` makes
   * through this driver join the transaction; a nested call joins the outer one.
   */
  transaction<T>(fn: () => Promise<T>): Promise<T>;
  /** Applies pending migrations; resolves to whether any was applied. */
  migrate(): Promise<boolean>;
  schemaVersion(): Promise<number>;
  /**
   * Calls `onChange` after other processes commit (SQLite: a `data_version` poll;
   * PostgreSQL: LISTEN, and after a lost connection comes back). Resolves to a stop function.
   */
  watch(onChange: () => void, options?: { pollMs?: number; onError?: (err: Error) => void }): Promise<() => Promise<void>>;
  /** SQLite: how long a write waits for another process's lock. */
  /**
   * Why this process reads a copy of the store and cannot write it (a read-only data
   * directory, a full disk), as the error to give a long-running writer; undefined otherwise.
   */
  readonly unwritable?: Error;
  setBusyTimeout?(ms: number): void;
  /** SQLite: whether another connection committed since the last call (a cheap synchronous read). */
  changed?(): boolean;
  close(): Promise<void>;
}

/** A unique constraint refused a write (a racing writer got there first). */
export function isUniqueViolation(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === '23505';
}

/** SQLite's text of a statement: parameter casts (`@x::text`) dropped. */
export const forSqlite = (sql: string): string => sql.replace(/(@\w+)::\w+/g, '$1');

/** `@name` → `$n` for node-postgres, once per statement text. */
export function toPositional(sql: string): { text: string; names: string[] } {
  const names: string[] = [];
  const text = sql.replace(/@(\w+)/g, (_, name: string) => {
    let i = names.indexOf(name);
    if (i < 0) i = names.push(name) - 1;
    return `$${i + 1}`;
  });
  return { text, names };
}

/** The column that orders rows as they were inserted (ties of created_at, which has second precision). */
export const insertionOrder = (sql: Sql): string => (sql.dialect === 'sqlite' ? 'rowid' : 'seq');

/** Text ordered byte by byte, as SQLite does: PostgreSQL would use the database's locale. */
export const bytewise = (sql: Sql, expr: string): string => (sql.dialect === 'sqlite' ? expr : `${expr} COLLATE "C"`);
