import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Store } from '../../src/store/index.js';
import { sharedPostgres } from './postgres.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const BIN = join(ROOT, 'bin/run.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command without a terminal and without blocking the event loop; never throws on a non-zero exit. */
export function run(cmd: string, args: string[], opts: { env?: Record<string, string | undefined>; cwd?: string } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...opts.env }, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Runs the built CLI as a real process, without a terminal, against a data directory. */
export function oxy(home: string, args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return run(process.execPath, [BIN, ...args], { env: { OXY_HOME: home, NO_COLOR: '1', ...storeEnv(home), ...env } });
}

/** Like oxy() but fails the test, showing stderr, when the command fails. */
export async function oxyOk(home: string, args: string[], env?: Record<string, string>): Promise<string> {
  const r = await oxy(home, args, env);
  if (r.code !== 0) throw new Error(`oxyctl ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

export async function oxyJson<T = unknown>(home: string, args: string[]): Promise<T> {
  return JSON.parse(await oxyOk(home, [...args, '-o', 'json'])) as T;
}

/**
 * The backend of this leg of the test matrix: `OXY_TEST_STORE=postgres` (the vitest project
 * `postgres`) gives each data directory a fresh database in the run's throwaway cluster.
 */
export const testBackend: 'sqlite' | 'postgres' = process.env.OXY_TEST_STORE === 'postgres' ? 'postgres' : 'sqlite';

const storeUrls = new Map<string, string>();

/** The store URL of a data directory made by tempHome(): its SQLite file, or its PostgreSQL database. */
export function storeUrl(home: string): string {
  return storeUrls.get(home) ?? `sqlite:${join(home, 'oxy.db')}`;
}

/** OXY_STORE for processes working on `home` (nothing on the SQLite leg: the default). */
export function storeEnv(home: string): Record<string, string> {
  const url = storeUrls.get(home);
  return url ? { OXY_STORE: url } : {};
}

/** Opens the store of a data directory made by tempHome(), on this leg's backend. */
export async function openTestStore(home: string): Promise<Store> {
  // Imported here: most files that spawn the CLI never open a store in process (~0.3 s a file).
  const { Store } = await import('../../src/store/index.js');
  return Store.open({ home, url: storeUrl(home) });
}

/**
 * A fresh data directory per test (and on the PostgreSQL leg a fresh database); removed by the
 * returned cleanup. With `from` (a data directory no process is using) it starts as a copy of that
 * one: its files, and its database (CREATE DATABASE … TEMPLATE).
 */
export function tempHome(from?: string): { home: string; cleanup: () => void } {
  const home = mkdtempSync(join(tmpdir(), 'oxyctl-test-'));
  if (from) cpSync(from, home, { recursive: true });
  if (testBackend === 'postgres') {
    const pg = sharedPostgres();
    if (!pg) throw new Error('OXY_TEST_STORE=postgres but no cluster: run through vitest (project postgres), whose globalSetup starts one');
    const template = from === undefined ? undefined : /@\/([^?]+)/.exec(storeUrls.get(from) ?? '')?.[1];
    if (from !== undefined && !template) throw new Error(`${from} has no database in this run's cluster`);
    storeUrls.set(home, pg.createDatabase(undefined, template));
  }
  return {
    home,
    cleanup: () => {
      storeUrls.delete(home);
      rmSync(home, { recursive: true, force: true });
    },
  };
}

/** Splits the tab-separated table printed when stdout is not a terminal. */
export function parseTable(stdout: string): { header: string[]; rows: string[][] } {
  const [header, ...rows] = stdout
    .trimEnd()
    .split('\n')
    .map((l) => l.split('\t'));
  return { header, rows };
}

/**
 * A set-up that many tests of a file repeat word for word (a site's vnet, tunnel, route and edge
 * identity), run once per test file: the first call runs `setup` with real CLI commands on a data
 * directory of its own, and every call gets a fresh copy of that directory (and database) made by
 * tempHome, with what `setup` returned (e.g. the commands' output, for tests that assert it). Each
 * CLI spawn is ~0.5 s of CPU; a copy is a directory copy (and a createdb). The template is removed
 * when the test worker exits.
 */
export function sharedHome<T>(setup: (home: string) => Promise<T>): () => Promise<{ home: string; cleanup: () => void; value: T }> {
  let template: Promise<{ home: string; value: T }> | undefined;
  return async () => {
    template ??= (async () => {
      const { home, cleanup } = tempHome();
      process.once('exit', cleanup);
      return { home, value: await setup(home) };
    })();
    const t = await template;
    return { ...tempHome(t.home), value: t.value };
  };
}
