#!/usr/bin/env node
/**
 * Edge-to-edge forwarding (issue 14): requests/s and bulk transfers through an edge that must
 * forward (edge-b: no connection of the tunnel, a peer link to edge-a) vs the edge that holds
 * the connector's connections (edge-a), in the same run, as a ratio (aim ≥ 0.7). Two edge
 * processes on one data directory (SQLite: the second edge finds the first's connections by
 * the data_version poll), a connector that dials edge-a only, an origin process; every
 * server in a process of its own.
 *   npm run build && node bench/forward.js [--seconds 5] [--mib 256] [--connections 32]
 */
import { rmSync } from 'node:fs';
import { Agent, Pool, request } from 'undici';
import { arg, best, cpuMicros, EDGE_RUN_LOOPBACK, fmt, spawnUntil, tunnelPortIn, httpTransfer, oxyBench, SERVERS } from './lib/run.js';

const MiB = 1024 * 1024;
const seconds = Number(arg('seconds', 5));
const mib = Number(arg('mib', 256));
const connections = Number(arg('connections', 32));
const { home, children, oxy, spawnOxy } = oxyBench();
const HOST = 'bench.example.com';

async function requestsPerSecond(origin) {
  const pool = new Pool(origin, { connections, pipelining: 1 });
  const deadline = performance.now() + seconds * 1000;
  let done = 0;
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (performance.now() < deadline) {
        const res = await pool.request({ path: '/small', method: 'GET', headers: { host: HOST } });
        await res.body.dump();
        if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`);
        done++;
      }
    }),
  );
  await pool.close();
  return done / seconds;
}

const transfer = (origin, op, n, dispatcher) => httpTransfer(origin, HOST, op, n, dispatcher);

/** Requests/s of `fn`, and each process's CPU µs per request while it ran. */
async function measured(procs, fn) {
  const before = procs.map((p) => cpuMicros(p.pid));
  const rps = await fn();
  const per = procs.map((p, i) => (cpuMicros(p.pid) - before[i]) / (rps * seconds));
  return { rps, per };
}

try {
  oxy('edge', 'init');
  oxy('tunnel', 'create', 'bench');
  oxy('tunnel', 'route', 'dns', 'bench', HOST);
  const origin = await spawnUntil(process.execPath, [SERVERS, 'http'], /ready (\d+)/);
  children.push(origin.child);
  const originUrl = `http://127.0.0.1:${origin.match[1]}`;
  const startEdge = async (location) => {
    const e = await spawnOxy([...EDGE_RUN_LOOPBACK, '--no-quic', '--location', location], /Public HTTP listener ready address=127\.0\.0\.1:(\d+)/);
    return {
      pid: e.child.pid,
      url: `http://127.0.0.1:${e.match[1]}`,
      tunnelPort: tunnelPortIn(e.output()),
    };
  };
  const a = await startEdge('edge-a');
  const b = await startEdge('edge-b');
  const connector = await spawnOxy(
    ['tunnel', 'run', '--edge', `127.0.0.1:${a.tunnelPort}`, '--protocol', 'http2', '--url', originUrl, 'bench'],
    /(Registered tunnel connection[^\n]*\n[\s\S]*){4}/,
  );
  // edge-b learns where the tunnel is at its next poll of the store.
  for (const t0 = Date.now(); ; ) {
    const res = await request(`${b.url}/small`, { headers: { host: HOST } });
    await res.body.dump();
    if (res.statusCode === 200) break;
    if (Date.now() - t0 > 10_000) throw new Error(`edge-b does not forward (status ${res.statusCode})`);
    await new Promise((r) => setTimeout(r, 100));
  }

  console.log(`# Forwarding: edge-b (forwards over a peer link to edge-a) vs edge-a (holds the connector's connections); busy shared machine, figures swing`);
  // Alternate so both see the same background load; best of the rounds.
  const procs = [b, a, { pid: connector.child.pid }, { pid: origin.child.pid }];
  // Warm both paths up first (JIT, the peer link's windows), so neither pays for it in its rounds.
  await Promise.all(
    [a.url, b.url].map(async (url) => {
      const until = performance.now() + 1000;
      while (performance.now() < until) await (await request(`${url}/small`, { headers: { host: HOST } })).body.dump();
    }),
  );
  let direct = { rps: 0 };
  let forward = { rps: 0 };
  for (let i = 0; i < 3; i++) {
    const d = await measured(procs, () => requestsPerSecond(a.url));
    if (d.rps > direct.rps) direct = d;
    const f = await measured(procs, () => requestsPerSecond(b.url));
    if (f.rps > forward.rps) forward = f;
  }
  console.log(
    `requests/s (keep-alive, ${connections} concurrent, 64-byte bodies, ${seconds}s, best of 3): forwarded ${fmt(forward.rps, 0)} | direct ${fmt(direct.rps, 0)} | ratio ${fmt(forward.rps / direct.rps, 2)}`,
  );
  const cpu = (m) => m.per.map((x) => fmt(x, 0)).join(' / ');
  const total = (m) => m.per.reduce((x, y) => x + y, 0);
  console.log(`CPU µs/request (edge-b / edge-a / connector / origin): forwarded ${cpu(forward)} | direct ${cpu(direct)}`);
  console.log(
    `  total CPU per request: forwarded ${fmt(total(forward), 0)} µs | direct ${fmt(total(direct), 0)} µs | ratio direct/forwarded ${fmt(total(direct) / total(forward), 2)}`,
  );
  const agent = new Agent({ connections: 4 });
  for (const op of ['get', 'put']) {
    const direct = await best(3, () => transfer(a.url, op, mib * MiB, agent));
    const forwarded = await best(3, () => transfer(b.url, op, mib * MiB, agent));
    console.log(
      `${op === 'get' ? 'download' : 'upload'} ${mib} MiB (best of 3): forwarded ${fmt(forwarded)} MiB/s | direct ${fmt(direct)} MiB/s | ratio ${fmt(forwarded / direct, 2)}`,
    );
  }
  await agent.close();
} finally {
  for (const c of children) c.kill('SIGKILL');
  rmSync(home, { recursive: true, force: true });
}
