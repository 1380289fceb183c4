/**
 * A throwaway PostgreSQL cluster for tests: Debian's PostgreSQL (scripts/setup.sh installs
 * it), initdb + pg_ctl in a temp dir as an unprivileged user (initdb refuses root), on a
 * free loopback port and a Unix socket in that dir (reachable from network namespaces too),
 * removed after. No pre-running service, no mocks.
 *
 *   const pg = await startPostgres();  const url = pg.createDatabase();  …  await pg.stop();
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './processes.js';

/** Debian's server binaries (initdb, pg_ctl, createdb), newest version first; undefined when not installed. */
export function postgresBinDir(): string | undefined {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return undefined;
  const versions = readdirSync(base)
    .filter((v) => existsSync(join(base, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions.length ? join(base, versions[0], 'bin') : undefined;
}

/** Where a cluster is, as the environment passes it to test workers (vitest globalSetup → forks). */
export interface PostgresCluster {
  bin: string;
  dir: string;
  port: number;
  /** The user the server runs as (also the superuser name in it). */
  user: string;
}

const asUser = (user: string): string[] => (process.getuid?.() === 0 ? ['runuser', '-u', user, '--'] : []);

function run(cluster: Pick<PostgresCluster, 'user'>, cmd: string, args: string[]): void {
  const argv = [...asUser(cluster.user), cmd, ...args];
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${argv.join(' ')} failed (${r.status}): ${r.stderr || r.stdout}`);
}

export class Postgres {
  #databases = 0;

  constructor(readonly cluster: PostgresCluster) {}

  /** A URL over the Unix socket (works from inside network namespaces). */
  url(database: string): string {
    return `postgres://${this.cluster.user}@/${database}?host=${encodeURIComponent(this.cluster.dir)}&port=${this.cluster.port}`;
  }

  /** A URL over TCP on loopback. */
  tcpUrl(database: string): string {
    return `postgres://${this.cluster.user}@127.0.0.1:${this.cluster.port}/${database}`;
  }

  /**
   * A new database, empty or a copy of `template` (a database's name; no client may be connected to
   * it while it is copied); returns its (Unix socket) URL.
   */
  createDatabase(name = `oxy_${process.pid}_${++this.#databases}_${Date.now() % 1e6}`, template?: string): string {
    const c = this.cluster;
    run(c, join(c.bin, 'createdb'), ['-h', c.dir, '-p', String(c.port), '-U', c.user, ...(template ? ['-T', template] : []), name]);
    return this.url(name);
  }

  /** Fast stop (no checkpoint): what a crash or a restart under load looks like to clients. */
  stopServer(): void {
    run(this.cluster, join(this.cluster.bin, 'pg_ctl'), ['-D', join(this.cluster.dir, 'data'), '-m', 'immediate', '-w', 'stop']);
  }

  startServer(): void {
    const c = this.cluster;
    run(c, join(c.bin, 'pg_ctl'), [
      '-D',
      join(c.dir, 'data'),
      '-l',
      join(c.dir, 'log'),
      '-w',
      '-t',
      '120',
      '-o',
      `-p ${c.port} -k ${c.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300`,
      'start',
    ]);
  }

  async stop(): Promise<void> {
    try {
      this.stopServer();
    } finally {
      rmSync(this.cluster.dir, { recursive: true, force: true });
    }
  }
}

/** Why a cluster cannot start here, or undefined when it can. */
export function postgresMissing(): string | undefined {
  if (!postgresBinDir()) return 'PostgreSQL is not installed (Debian package postgresql; scripts/setup.sh installs it)';
  if (process.getuid?.() === 0 && spawnSync('id', ['-u', 'postgres']).status !== 0 && spawnSync('id', ['-u', 'nobody']).status !== 0) {
    return 'no unprivileged user (postgres or nobody) to run initdb as';
  }
  return undefined;
}

export async function startPostgres(): Promise<Postgres> {
  const missing = postgresMissing();
  if (missing) throw new Error(missing);
  const bin = postgresBinDir()!;
  const root = process.getuid?.() === 0;
  const user = !root ? execFileSync('id', ['-un'], { encoding: 'utf8' }).trim() : spawnSync('id', ['-u', 'postgres']).status === 0 ? 'postgres' : 'nobody';
  const dir = mkdtempSync(join(tmpdir(), 'oxy-pg-'));
  chmodSync(dir, 0o755);
  if (root) {
    const uid = Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }));
    const gid = Number(execFileSync('id', ['-g', user], { encoding: 'utf8' }));
    chownSync(dir, uid, gid);
  }
  const pg = new Postgres({ bin, dir, port: await freePort(), user });
  try {
    run(pg.cluster, join(bin, 'initdb'), ['-D', join(dir, 'data'), '-A', 'trust', '-U', user, '-E', 'UTF8', '--no-sync', '--no-instructions']);
    pg.startServer();
  } catch (err) {
    // A start that timed out may still leave a postmaster behind: stopped before its files go.
    try {
      pg.stopServer();
    } catch {}
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return pg;
}

/** The cluster the vitest globalSetup started for the PostgreSQL leg of the matrix, if this worker is in it. */
export function sharedPostgres(): Postgres | undefined {
  const env = process.env.OXY_TEST_PG;
  return env ? new Postgres(JSON.parse(env) as PostgresCluster) : undefined;
}
