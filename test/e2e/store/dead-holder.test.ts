/**
 * A holder that stops answering leaves the other edges' views on its own (issue 14): on
 * PostgreSQL heartbeats notify nothing, so an edge re-reads the holders every heartbeat
 * interval. edge-a holds tunnel `web`; edge-b forwards to it. edge-a is frozen (SIGSTOP: a host
 * that drops packets, no store change follows): once its heartbeat is stale, edge-b answers
 * `web` with a prompt 502 instead of waiting on the frozen edge.
 */
import { execFile } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { oxyOk, tempHome } from '../../helpers/cli.js';
import { OxyProcess, startLoopbackEdge } from '../../helpers/processes.js';

/** Heartbeats every 300 ms: an edge is dead 900 ms after its last one. */
const env = { OXY_EDGE_HEARTBEAT_MS: '300' };

const curl = (port: number, maxTime: number) =>
  new Promise<{ stdout: string; ms: number }>((resolve) => {
    const t0 = Date.now();
    execFile('curl', ['--silent', '-i', '--max-time', String(maxTime), '-H', 'Host: app.example.com', `http://127.0.0.1:${port}/x`], (_err, stdout) =>
      resolve({ stdout, ms: Date.now() - t0 }),
    );
  });

let home: string;
let cleanup: () => void;
const procs: OxyProcess[] = [];
let origin: http.Server;
let edgeA: OxyProcess;
let httpB: number;

const startEdge = (location: string) => startLoopbackEdge(home, location, procs, env);

beforeAll(async () => {
  ({ home, cleanup } = tempHome());
  origin = http.createServer((req, res) => res.end(`origin ${req.url}`));
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
  await oxyOk(home, ['tunnel', 'create', 'web']);
  await oxyOk(home, ['tunnel', 'route', 'dns', 'web', 'app.example.com']);
  const a = await startEdge('edge-a');
  edgeA = a.proc;
  httpB = (await startEdge('edge-b')).http;
  const c = new OxyProcess(home, [
    'tunnel',
    'run',
    '--edge',
    `127.0.0.1:${a.tunnel}`,
    '--protocol',
    'http2',
    '--ha-connections',
    '1',
    '--url',
    `http://127.0.0.1:${(origin.address() as AddressInfo).port}`,
    'web',
  ]);
  procs.push(c);
  await c.waitFor(/Registered tunnel connection connIndex=0 /);
});

afterAll(async () => {
  edgeA?.child.kill('SIGCONT');
  await Promise.all(procs.map((p) => p.stop()));
  await new Promise((r) => origin?.close(r));
  cleanup?.();
});

it('an edge whose holder froze answers a prompt 502 once the holder’s heartbeat is stale', async () => {
  let r = await curl(httpB, 5);
  for (const t0 = Date.now(); !r.stdout.includes('origin /x') && Date.now() - t0 < 5000; ) r = await curl(httpB, 5);
  expect(r.stdout).toMatch(/^HTTP\/1\.1 200/);

  edgeA.child.kill('SIGSTOP');
  const frozenAt = Date.now();
  // Each try may wait on the frozen edge (at most 2 s); once the holders were re-read, 502 at once.
  do r = await curl(httpB, 2);
  while (!r.stdout.startsWith('HTTP/1.1 502') && Date.now() - frozenAt < 8000);
  expect(r.stdout).toMatch(/^HTTP\/1\.1 502/);
  const again = await curl(httpB, 2);
  expect(again.stdout).toMatch(/^HTTP\/1\.1 502/);
  expect(again.ms).toBeLessThan(1000);
});
