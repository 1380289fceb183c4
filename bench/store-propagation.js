#!/usr/bin/env node
/**
 * Propagation latency of a store change to 3 edges' in-memory views (engine/edge/store-view.ts):
 * each edge is a process of its own with its own store connection; the parent adds IP routes
 * one at a time (core addRoute, as `tunnel route ip add` does) and every edge reports when
 * its routing has the route. Measured from the write's commit to each edge applying it
 * (process.hrtime is one monotonic clock for all processes), on PostgreSQL (LISTEN/NOTIFY)
 * and, as the baseline in the same run, SQLite (the 250 ms data_version poll).
 *   npm run build && node bench/store-propagation.js [--routes 100] [--edges 3] [--store postgres://…]
 * Without --store a throwaway PostgreSQL cluster is started (Debian's postgresql, initdb as
 * the postgres user when run as root) and removed after.
 */
import { execFileSync, fork, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};

if (process.argv[2] === '--child') {
  // One edge: a store connection and the view the data plane reads.
  const { Store } = await import('../dist/store/index.js');
  const { StoreView } = await import('../dist/engine/edge/store-view.js');
  const [url, home] = [process.argv[3], process.argv[4]];
  const store = await Store.open({ home, url });
  const view = new StoreView(store);
  const seen = new Set();
  view.on('reload', () => {
    const t = process.hrtime.bigint();
    for (const tunnelRoutes of [view.routesForTunnel(process.env.BENCH_TUNNEL)]) {
      for (const r of tunnelRoutes) if (!seen.has(r.network)) seen.add(r.network), process.send({ network: r.network, t: String(t) });
    }
  });
  await view.start();
  process.send({ ready: true });
  process.on('message', async (m) => {
    if (m === 'stop') {
      await view.stop();
      await store.close();
      process.exit(0);
    }
  });
} else {
  const routes = Number(arg('routes', 100));
  const edgeCount = Number(arg('edges', 3));
  const { Store } = await import('../dist/store/index.js');
  const { createTunnel } = await import('../dist/core/tunnels.js');
  const { addRoute } = await import('../dist/core/routes.js');
  const self = fileURLToPath(import.meta.url);

  async function measure(url, home) {
    const writer = await Store.open({ home, url });
    const { tunnel } = await createTunnel(writer, { name: `bench-${Date.now()}`, credentialsFile: join(home, `${Date.now()}.json`) });
    const children = Array.from({ length: edgeCount }, () => fork(self, ['--child', url, home], { env: { ...process.env, BENCH_TUNNEL: tunnel.id } }));
    const waiting = new Map();
    for (const c of children) {
      c.on('message', (m) => {
        if (!m.network) return;
        const w = waiting.get(m.network);
        if (w) w.arrive(BigInt(m.t));
      });
    }
    await Promise.all(children.map((c) => new Promise((r) => c.on('message', (m) => m.ready && r()))));
    const latencies = [];
    for (let i = 0; i < routes; i++) {
      const network = `10.${100 + (i >> 8)}.${i & 255}.0/24`;
      const arrivals = [];
      const all = new Promise((resolve) => waiting.set(network, { arrive: (t) => arrivals.push(t) === edgeCount && resolve() }));
      await addRoute(writer, { network, tunnel: tunnel.id });
      const committed = process.hrtime.bigint();
      await all;
      for (const t of arrivals) latencies.push(Math.max(0, Number(t - committed) / 1e6));
      // Spread the writes: not in step with the SQLite poll.
      await new Promise((r) => setTimeout(r, 5 + Math.random() * 20));
    }
    for (const c of children) c.send('stop');
    await Promise.all(children.map((c) => new Promise((r) => c.on('exit', r))));
    await writer.close();
    latencies.sort((a, b) => a - b);
    const q = (p) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))];
    return { median: q(0.5), p99: q(0.99), max: latencies.at(-1) };
  }

  const freePort = () =>
    new Promise((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const { port } = s.address();
        s.close(() => resolve(port));
      });
    });

  /** A throwaway cluster as the tests make one (test/helpers/postgres.ts). */
  async function startCluster() {
    const base = '/usr/lib/postgresql';
    const version = readdirSync(base).sort((a, b) => Number(b) - Number(a))[0];
    const bin = join(base, version, 'bin');
    const root = process.getuid() === 0;
    const user = root ? 'postgres' : execFileSync('id', ['-un'], { encoding: 'utf8' }).trim();
    const as = (cmd, args) => {
      const argv = root ? ['runuser', '-u', user, '--', join(bin, cmd), ...args] : [join(bin, cmd), ...args];
      const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`${cmd}: ${r.stderr}`);
    };
    const dir = mkdtempSync(join(tmpdir(), 'oxy-bench-pg-'));
    chmodSync(dir, 0o755);
    if (root) chownSync(dir, Number(execFileSync('id', ['-u', user], { encoding: 'utf8' })), Number(execFileSync('id', ['-g', user], { encoding: 'utf8' })));
    const port = await freePort();
    as('initdb', ['-D', join(dir, 'data'), '-A', 'trust', '-U', user, '--no-sync', '--no-instructions']);
    as('pg_ctl', ['-D', join(dir, 'data'), '-l', join(dir, 'log'), '-w', '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1`, 'start']);
    as('createdb', ['-h', dir, '-p', String(port), '-U', user, 'oxy']);
    return {
      url: `postgres://${user}@127.0.0.1:${port}/oxy`,
      stop: () => {
        as('pg_ctl', ['-D', join(dir, 'data'), '-m', 'fast', '-w', 'stop']);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }

  const home = mkdtempSync(join(tmpdir(), 'oxy-bench-'));
  const cluster = arg('store') ? undefined : await startCluster();
  try {
    const pgResult = await measure(arg('store') ?? cluster.url, home);
    const sqliteResult = await measure(`sqlite:${join(home, 'oxy.db')}`, home);
    const fmt = (r) => `median ${r.median.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms, max ${r.max.toFixed(1)} ms`;
    console.log(`${routes} routes added one at a time, ${edgeCount} edge processes, commit → applied in each edge's view:`);
    console.log(`  PostgreSQL (LISTEN/NOTIFY): ${fmt(pgResult)}`);
    console.log(`  SQLite (data_version poll, baseline): ${fmt(sqliteResult)}`);
    console.log(`  ratio of medians PostgreSQL/SQLite: ${(pgResult.median / sqliteResult.median).toFixed(3)} (aim: ≤ 100 ms median, ≤ 1 s worst)`);
  } finally {
    cluster?.stop();
    rmSync(home, { recursive: true, force: true });
  }
}
