/**
 * Two edges sharing one PostgreSQL store (real processes, a throwaway cluster of this file's
 * own so it can be cut): a change made with the CLI reaches both edges by LISTEN/NOTIFY; a
 * dropped database connection reconnects and reloads; a PostgreSQL restart under load costs
 * no request (the edges serve from memory) and changes flow again after it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { oxyOk, tempHome } from '../../helpers/cli.js';
import { OxyProcess } from '../../helpers/processes.js';
import { startPostgres, type Postgres } from '../../helpers/postgres.js';
import { until } from '../../helpers/until.js';
import { Store } from '../../../src/store/index.js';

let pg: Postgres;
let home: string;
let cleanup: () => void;
let env: Record<string, string>;
const procs: OxyProcess[] = [];
const edges: { name: string; httpPort: number; tunnelPort: number; proc: OxyProcess }[] = [];

async function startEdgeAt(location: string) {
  const proc = new OxyProcess(
    home,
    ['edge', 'run', '--tunnel-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--metrics', '127.0.0.1:0', '--location', location, '--no-quic'],
    env,
  );
  procs.push(proc);
  const tunnel = await proc.waitFor(/Tunnel listener ready protocol=http2 address=127\.0\.0\.1:(\d+)/);
  const http = await proc.waitFor(/Public HTTP listener ready address=127\.0\.0\.1:(\d+)/);
  edges.push({ name: location, httpPort: Number(http[1]), tunnelPort: Number(tunnel[1]), proc });
  const c = await startConnectorWith(Number(tunnel[1]));
  procs.push(c);
}

async function startConnectorWith(tunnelPort: number): Promise<OxyProcess> {
  const c = new OxyProcess(
    home,
    ['tunnel', 'run', '--edge', `127.0.0.1:${tunnelPort}`, '--protocol', 'http2', '--ha-connections', '2', '--hello-world', 'web'],
    env,
  );
  for (let i = 0; i < 2; i++) await c.waitFor(new RegExp(`Registered tunnel connection connIndex=${i} `));
  return c;
}

const get = async (port: number, host: string) => {
  const r = await request(`http://127.0.0.1:${port}/`, { headers: { host }, headersTimeout: 5000, bodyTimeout: 5000 });
  const body = await r.body.text();
  return { status: r.statusCode, body };
};

/** Polls until every edge serves `host` from the tunnel. */
async function servedEverywhere(host: string, timeoutMs: number): Promise<void> {
  await until(
    async () => {
      const answers = await Promise.all(edges.map((e) => get(e.httpPort, host).catch(() => ({ status: 0, body: '' }))));
      return answers.every((a) => a.status === 200);
    },
    timeoutMs,
    `every edge to serve ${host}`,
  );
}

beforeAll(async () => {
  pg = await startPostgres();
  ({ home, cleanup } = tempHome());
  // Heartbeats every second: a killed edge is dead after 3 s.
  env = { OXY_STORE: pg.createDatabase('oxy'), OXY_EDGE_HEARTBEAT_MS: '1000' };
  await oxyOk(home, ['tunnel', 'create', 'web'], env);
  await oxyOk(home, ['tunnel', 'route', 'dns', 'web', 'app.example.com'], env);
  await startEdgeAt('edge-a');
  await startEdgeAt('edge-b');
  // One connector over both edges (--edge repeated, as cloudflared's): its 4 HA connections spread 2 + 2.
  await oxyOk(home, ['tunnel', 'create', 'spread'], env);
  await oxyOk(home, ['tunnel', 'route', 'dns', 'spread', 'spread.example.com'], env);
  const spread = new OxyProcess(
    home,
    ['tunnel', 'run', ...edges.flatMap((e) => ['--edge', `127.0.0.1:${e.tunnelPort}`]), '--protocol', 'http2', '--hello-world', 'spread'],
    env,
  );
  procs.push(spread);
  for (let i = 0; i < 4; i++) await spread.waitFor(new RegExp(`Registered tunnel connection connIndex=${i} `));
});

const coloNames = async (tunnel: string) => {
  const list = JSON.parse(await oxyOk(home, ['tunnel', 'list', '-o', 'json'], env)) as { name: string; connections: { colo_name: string }[] }[];
  return (list.find((t) => t.name === tunnel)?.connections ?? []).map((c) => c.colo_name).sort();
};

afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop()));
  await pg?.stop();
  cleanup?.();
});

describe('two edges on one PostgreSQL store', () => {
  it('both serve the tunnel, and tunnel list counts the connections of both edges', async () => {
    for (const e of edges) expect(await get(e.httpPort, 'app.example.com')).toMatchObject({ status: 200 });
    const list = JSON.parse(await oxyOk(home, ['tunnel', 'list', '-o', 'json'], env)) as { connections: { colo_name: string }[] }[];
    expect(list[0].connections.map((c) => c.colo_name).sort()).toEqual(['edge-a', 'edge-a', 'edge-b', 'edge-b']);
    // The connector given both edges spread its 4 connections over them.
    expect(await coloNames('spread')).toEqual(['edge-a', 'edge-a', 'edge-b', 'edge-b']);
    for (const e of edges) expect(await get(e.httpPort, 'spread.example.com')).toMatchObject({ status: 200 });
    const registry = JSON.parse(await oxyOk(home, ['edge', 'list', '-o', 'json'], env)) as { location: string; connections: number; tunnel_address: string }[];
    expect(registry.map((e) => [e.location, e.connections])).toEqual([
      ['edge-a', 4],
      ['edge-b', 4],
    ]);
    expect(registry[0].tunnel_address).toMatch(/^127\.0\.0\.1:\d+$/);
    // A token names every live edge: a connector given only the token spreads over them.
    const token = JSON.parse(Buffer.from((await oxyOk(home, ['tunnel', 'token', 'web'], env)).trim(), 'base64').toString()) as { e: string };
    expect(token.e.split(',').sort()).toEqual(edges.map((e) => `127.0.0.1:${e.tunnelPort}`).sort());
  });

  it('a hostname added with the CLI reaches every edge (LISTEN/NOTIFY, no poll)', async () => {
    await oxyOk(home, ['tunnel', 'route', 'dns', 'web', 'new.example.com'], env);
    await servedEverywhere('new.example.com', 5000);
  });

  it('a dropped database connection reconnects with backoff and reloads in full', async () => {
    const admin = await Store.open({ home, url: env.OXY_STORE });
    // Cuts every other session: the edges' LISTEN connections and pools.
    await admin.driver.run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND datname = 'oxy'");
    await admin.close();
    await oxyOk(home, ['tunnel', 'route', 'dns', 'web', 'after-drop.example.com'], env);
    await servedEverywhere('after-drop.example.com', 15_000);
    for (const e of edges) await e.proc.waitFor(/Lost the store connection; reconnecting/);
  });

  it('PostgreSQL restarted under load: every request is served from memory, and changes flow again after', async () => {
    let ok = 0;
    const failures: string[] = [];
    let running = true;
    const load = Promise.all(
      edges.map(async (e) => {
        while (running) {
          const r = await get(e.httpPort, 'app.example.com').catch((err: Error) => ({ status: 0, body: err.message }));
          if (r.status === 200 && r.body.length > 0) ok++;
          else failures.push(`${e.name}: ${r.status} ${r.body.slice(0, 80)}`);
        }
      }),
    );
    await new Promise((r) => setTimeout(r, 300));
    pg.stopServer();
    await new Promise((r) => setTimeout(r, 1500));
    pg.startServer();
    await new Promise((r) => setTimeout(r, 300));
    running = false;
    await load;
    expect(failures).toEqual([]);
    expect(ok).toBeGreaterThan(20);
    await oxyOk(home, ['tunnel', 'route', 'dns', 'web', 'after-restart.example.com'], env);
    await servedEverywhere('after-restart.example.com', 15_000);
  });

  it('a killed edge drops out of edge list, and its connections out of tunnel list, once its heartbeat is stale', async () => {
    const b = edges.find((e) => e.name === 'edge-b')!;
    const before = JSON.parse(await oxyOk(home, ['edge', 'list', '-o', 'json'], env)) as { location: string; heartbeat_at: string }[];
    const lastSeen = Date.parse(before.find((e) => e.location === 'edge-b')!.heartbeat_at);
    b.proc.kill();
    await b.proc.exited();
    await until(async () => (await coloNames('web')).join() === 'edge-a,edge-a', 15_000, "edge-b's connections to drop out");
    // Not before its heartbeat (renewed every second) went stale: 3 s after the last one it wrote,
    // which is no earlier than the one read above (a loaded machine writes them late, so not "3 s after the kill").
    expect(Date.now()).toBeGreaterThanOrEqual(lastSeen + 3000);
    const registry = JSON.parse(await oxyOk(home, ['edge', 'list', '-o', 'json'], env)) as { location: string }[];
    expect(registry.map((e) => e.location)).toEqual(['edge-a']);
    // The survivor still serves, and the connector over both edges moved its connections to it.
    const a = edges.find((e) => e.name === 'edge-a')!;
    expect(await get(a.httpPort, 'app.example.com')).toMatchObject({ status: 200 });
    await until(async () => (await coloNames('spread')).join() === 'edge-a,edge-a,edge-a,edge-a', 30_000, 'the spread connector to move to edge-a');
    expect(await get(a.httpPort, 'spread.example.com')).toMatchObject({ status: 200 });
  }, 60_000);
});
