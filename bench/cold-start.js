#!/usr/bin/env node
/**
 * A command's start: `oxyctl vnet list` on a store of 1,000 vnets (table and JSON), `tunnel route
 * ip show` and `version`, against `node -e 0` measured in the same run (interleaved, median of N),
 * on SQLite and on PostgreSQL (a throwaway cluster, as the tests' helper starts one; skipped with a
 * note when PostgreSQL is not installed, or with --pg 0). Wall time and CPU (the command's user +
 * system time, from this process's children's times in /proc/self/stat: 10 ms ticks, hence the
 * medians), each also as a ratio to node -e 0's. Aim (wall, vnet list on SQLite): <= 2.5x.
 *   npm run build && node bench/cold-start.js [--runs 15] [--vnets 1000] [--pg 0] [--bin other/bin/run.js]
 * --bin runs another build's CLI (a before/after pair: run the bench once with each, alternating).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Store } from '../dist/store/index.js';
import { addVnet } from '../dist/core/vnets.js';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const runs = Number(arg('runs', 15));
const vnets = Number(arg('vnets', 1000));
const bin = resolve(arg('bin', fileURLToPath(new URL('../bin/run.js', import.meta.url))));

/** User + system time of the children this process has waited for, in ms (fields 16-17). */
const TICK_MS = 1000 / Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));
const childCpu = () => {
  const f = readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ');
  return (Number(f[13]) + Number(f[14])) * TICK_MS;
};

const time = (args, env) => {
  const c0 = childCpu();
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  const wall = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${args.join(' ')} exited ${r.status}`);
  return { wall, cpu: childCpu() - c0 };
};
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** A throwaway cluster (what test/helpers/postgres.ts does): initdb as an unprivileged user. */
async function startPostgres() {
  const base = '/usr/lib/postgresql';
  const version = existsSync(base)
    ? readdirSync(base)
        .filter((v) => existsSync(join(base, v, 'bin/initdb')))
        .sort((a, b) => b - a)[0]
    : undefined;
  if (!version) return undefined;
  const pgBin = join(base, version, 'bin');
  const root = process.getuid() === 0;
  const user = !root ? execFileSync('id', ['-un'], { encoding: 'utf8' }).trim() : spawnSync('id', ['-u', 'postgres']).status === 0 ? 'postgres' : 'nobody';
  const as = (cmd, args) => execFileSync(root ? 'runuser' : cmd, root ? ['-u', user, '--', cmd, ...args] : args, { stdio: 'ignore' });
  const dir = mkdtempSync(join(tmpdir(), 'oxy-bench-pg-'));
  chmodSync(dir, 0o755);
  if (root) chownSync(dir, Number(execFileSync('id', ['-u', user], { encoding: 'utf8' })), Number(execFileSync('id', ['-g', user], { encoding: 'utf8' })));
  const port = await new Promise((ok) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port: free } = s.address();
      s.close(() => ok(free));
    });
  });
  const data = join(dir, 'data');
  const stop = () => {
    try {
      as(join(pgBin, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop']);
    } catch {}
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    as(join(pgBin, 'initdb'), ['-D', data, '-A', 'trust', '-U', user, '-E', 'UTF8', '--no-sync', '--no-instructions']);
    as(join(pgBin, 'pg_ctl'), ['-D', data, '-l', join(dir, 'log'), '-w', '-o', `-p ${port} -k ${dir} -c listen_addresses='' -c fsync=off`, 'start']);
    as(join(pgBin, 'createdb'), ['-h', dir, '-p', String(port), '-U', user, 'bench']);
  } catch (err) {
    stop();
    throw err;
  }
  return { url: `postgres://${user}@/bench?host=${encodeURIComponent(dir)}&port=${port}`, stop };
}

/** A data directory with `vnets` vnets, on SQLite (url undefined) or the PostgreSQL database `url`. */
async function makeStore(url) {
  const home = mkdtempSync(join(tmpdir(), 'oxy-bench-'));
  const store = await Store.open(url ? { home, url } : home);
  await store.write(async () => {
    for (let i = 0; i < vnets; i++) await addVnet(store, { name: `vnet-${i}`, comment: `bench vnet ${i}` });
  });
  await store.close();
  return { home, env: { OXY_HOME: home, ...(url ? { OXY_STORE: url } : {}) } };
}

const COMMANDS = [
  [`vnet list (${vnets} vnets, table)`, ['vnet', 'list']],
  ['vnet list -o json', ['vnet', 'list', '-o', 'json']],
  ['tunnel route ip show', ['tunnel', 'route', 'ip', 'show']],
  ['version', ['version']],
];

function measure(label, env) {
  // Warm the OS file cache once, then interleave so noise hits every command alike.
  time(['-e', '0'], env);
  for (const [, args] of COMMANDS) time([bin, ...args], env);
  const base = [];
  const results = COMMANDS.map(() => []);
  for (let i = 0; i < runs; i++) {
    base.push(time(['-e', '0'], env));
    COMMANDS.forEach(([, args], j) => results[j].push(time([bin, ...args], env)));
  }
  const bw = median(base.map((r) => r.wall));
  const bc = median(base.map((r) => r.cpu));
  console.log(`${label}: median of ${runs}, ${bin}`);
  console.log(`  ${'node -e 0'.padEnd(30)} wall ${bw.toFixed(1).padStart(6)} ms          cpu ${bc.toFixed(0).padStart(4)} ms`);
  COMMANDS.forEach(([name], j) => {
    const w = median(results[j].map((r) => r.wall));
    const c = median(results[j].map((r) => r.cpu));
    console.log(`  ${name.padEnd(30)} wall ${w.toFixed(1).padStart(6)} ms ${(w / bw).toFixed(2)}x  cpu ${c.toFixed(0).padStart(4)} ms ${(c / bc).toFixed(2)}x`);
  });
}

const sqlite = await makeStore();
try {
  measure('SQLite', sqlite.env);
} finally {
  rmSync(sqlite.home, { recursive: true, force: true });
}

if (arg('pg', '1') !== '0') {
  const pg = await startPostgres();
  if (!pg) console.log('PostgreSQL: not installed (scripts/setup.sh installs it), skipped');
  else {
    try {
      const store = await makeStore(pg.url);
      try {
        measure('PostgreSQL', store.env);
      } finally {
        rmSync(store.home, { recursive: true, force: true });
      }
    } finally {
      pg.stop();
    }
  }
}
