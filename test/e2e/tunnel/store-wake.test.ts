/**
 * Two edges on one SQLite store learn each other's commits when the WAL file is written, not at
 * their next poll (store/sqlite.ts watch()): with the poll stretched to a minute, a connector
 * that registers on edge-a is served through edge-b (forwarded) within seconds, and a hostname
 * added with the CLI is served by both. Before the wake, the gap was up to one poll (250 ms):
 * CONNECT and IP flows to a tunnel that had just registered elsewhere got 502s meanwhile.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { oxyOk, tempHome } from '../../helpers/cli.js';
import { OxyProcess, startLoopbackEdge } from '../../helpers/processes.js';
import { until } from '../../helpers/until.js';

// A minute's poll, and a minute between the edges' re-reads of who holds which tunnel (heartbeats).
const POLL = { OXY_STORE_POLL_MS: '60000', OXY_EDGE_HEARTBEAT_MS: '60000' };
let home: string;
let cleanup: () => void;
const procs: OxyProcess[] = [];
let origin: http.Server;
let a: { tunnel: number; http: number };
let b: { tunnel: number; http: number };

const status = (port: number, host: string) =>
  new Promise<number>((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/x', headers: { host, connection: 'close' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve(0));
  });

beforeAll(async () => {
  ({ home, cleanup } = tempHome());
  origin = http.createServer((_req, res) => res.end('origin'));
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
  await oxyOk(home, ['tunnel', 'create', 'web']);
  await oxyOk(home, ['tunnel', 'route', 'dns', 'web', 'app.example.com']);
  a = await startLoopbackEdge(home, 'edge-a', procs, POLL);
  b = await startLoopbackEdge(home, 'edge-b', procs, POLL);
});

afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop('SIGKILL')));
  await new Promise((r) => origin?.close(r));
  cleanup?.();
});

it('a registration on one edge and a hostname added with the CLI reach the other edge without waiting for the poll', async () => {
  expect(await status(b.http, 'app.example.com')).toBe(502);
  const c = new OxyProcess(home, [
    ...['tunnel', 'run', '--edge', `127.0.0.1:${a.tunnel}`, '--protocol', 'http2', '--ha-connections', '1'],
    ...['--url', `http://127.0.0.1:${(origin.address() as AddressInfo).port}`, 'web'],
  ]);
  procs.push(c);
  await c.waitFor(/Registered tunnel connection connIndex=0 /);
  // (The next poll or holders re-read would be a minute away.)
  await until(async () => (await status(b.http, 'app.example.com')) === 200, 10_000, 'edge-b to forward to the connector on edge-a');
  await oxyOk(home, ['tunnel', 'route', 'dns', 'web', 'new.example.com']);
  for (const edge of [a, b]) await until(async () => (await status(edge.http, 'new.example.com')) === 200, 10_000, 'both edges to serve the new hostname');
}, 40_000);
