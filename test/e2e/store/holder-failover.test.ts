/**
 * A forwarded request whose holder cannot be dialed goes to another holder (issue 14):
 * edge-a and edge-c each hold a connection of `web`, edge-b forwards. The holder edge-b
 * prefers is killed (-9); within its heartbeat's life it is still a holder in edge-b's view,
 * and the next request, which dials it first and is refused, is served through the other.
 */
import { execFile } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { oxyOk, tempHome } from '../../helpers/cli.js';
import { OxyProcess, startLoopbackEdge } from '../../helpers/processes.js';

const curl = (port: number) =>
  new Promise<string>((resolve) =>
    execFile('curl', ['--silent', '-i', '--max-time', '5', '-H', 'Host: app.example.com', `http://127.0.0.1:${port}/x`], (_err, stdout) => resolve(stdout)),
  );

let home: string;
let cleanup: () => void;
const procs: OxyProcess[] = [];
let origin: http.Server;
const edges: Record<string, { proc: OxyProcess; tunnel: number; http: number }> = {};

async function startEdge(location: string) {
  edges[location] = await startLoopbackEdge(home, location, procs);
}

beforeAll(async () => {
  ({ home, cleanup } = tempHome());
  origin = http.createServer((req, res) => res.end(`origin ${req.url}`));
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
  await oxyOk(home, ['tunnel', 'create', 'web']);
  await oxyOk(home, ['tunnel', 'route', 'dns', 'web', 'app.example.com']);
  for (const location of ['edge-a', 'edge-b', 'edge-c']) await startEdge(location);
  // Two connections over two edges: one on edge-a, one on edge-c.
  const c = new OxyProcess(home, [
    ...['tunnel', 'run', '--edge', `127.0.0.1:${edges['edge-a'].tunnel}`, '--edge', `127.0.0.1:${edges['edge-c'].tunnel}`],
    ...['--protocol', 'http2', '--ha-connections', '2', '--url', `http://127.0.0.1:${(origin.address() as AddressInfo).port}`, 'web'],
  ]);
  procs.push(c);
  for (let i = 0; i < 2; i++) await c.waitFor(new RegExp(`Registered tunnel connection connIndex=${i} `));
}, 30_000);

afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop()));
  await new Promise((r) => origin?.close(r));
  cleanup?.();
});

it('a request forwarded to a holder that refuses the dial is served through the other holder', async () => {
  const b = edges['edge-b'];
  let r = await curl(b.http);
  for (const t0 = Date.now(); !r.includes('origin /x') && Date.now() - t0 < 5000; ) r = await curl(b.http);
  expect(r).toMatch(/^HTTP\/1\.1 200/);
  // Which holder edge-b dialed: the one it picks first while both are idle.
  const preferred = (await b.proc.waitFor(/Peer link to edge open .*location=(edge-[ac])/))[1]!;
  edges[preferred].proc.kill();
  await b.proc.waitFor(new RegExp(`Peer link to edge closed .*location=${preferred}`));
  r = await curl(b.http);
  expect(r).toMatch(/^HTTP\/1\.1 200/);
  // (Usually through the failover — 'Forwarding to another edge that holds the tunnel' in
  // edge-b's log; a reload in between may already put the live holder first.)
  expect(r).toContain('origin /x');
});
