/**
 * A forwarded request whose holder cannot be dialed goes to another holder (issue 14):
 * edge-a and edge-c each hold a connection of `web`, edge-b forwards. The holder edge-b
 * prefers is killed (-9); within its heartbeat's life it is still a holder in edge-b's view,
 * and the next request, which dials it first and is refused, is served through the other.
 * Then the killed holder's address accepts TCP and never answers TLS (a hung host): requests on
 * both HTTP paths wait for that dial, are served through the other holder, and their
 * Proxy-Status names the holder that served them, not the one picked first.
 * Heartbeats every 10 s: the killed holder stays in edge-b's view for 30 s, the whole file.
 */
import { execFile } from 'node:child_process';
import http from 'node:http';
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { oxyOk, tempHome } from '../../helpers/cli.js';
import { OxyProcess, startLoopbackEdge } from '../../helpers/processes.js';

const curl = (port: number, ...args: string[]) =>
  new Promise<string>((resolve) =>
    execFile('curl', ['--silent', '-i', '--max-time', '15', ...args, '-H', 'Host: app.example.com', `http://127.0.0.1:${port}/x`], (_err, stdout) =>
      resolve(stdout),
    ),
  );

let home: string;
let cleanup: () => void;
const procs: OxyProcess[] = [];
let origin: http.Server;
let hung: Server | undefined;
const held: Socket[] = [];
const edges: Record<string, { proc: OxyProcess; tunnel: number; http: number }> = {};
/** Answers to /slow, held until the test lets them go. */
const slow: http.ServerResponse[] = [];

async function startEdge(location: string) {
  edges[location] = await startLoopbackEdge(home, location, procs, { OXY_EDGE_HEARTBEAT_MS: '10000' });
}

beforeAll(async () => {
  ({ home, cleanup } = tempHome());
  origin = http.createServer((req, res) => (req.url === '/slow' ? void slow.push(res) : res.end(`origin ${req.url}`)));
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
});

afterAll(async () => {
  for (const res of slow) res.end('origin /slow');
  await Promise.all(procs.map((p) => p.stop()));
  await new Promise((r) => origin?.close(r));
  for (const s of held) s.destroy();
  hung?.close();
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
  const survivor = preferred === 'edge-a' ? 'edge-c' : 'edge-a';
  expect(r).toMatch(new RegExp(`\\r\\nproxy-status: oxyctl; next-hop="${survivor}"\\r\\n`, 'i'));
});

it('after a failover on the per-request path, Proxy-Status names the holder that served the request', async () => {
  const b = edges['edge-b'];
  const dead = Object.keys(edges).find((l) => edges[l].proc.child.exitCode !== null || edges[l].proc.child.signalCode !== null)!;
  const survivor = dead === 'edge-a' ? 'edge-c' : 'edge-a';
  await edges[dead].proc.exited();
  // The dead holder's address now takes TCP connections and never answers (a hung host). While
  // its last refused dial backs off edge-b forwards to the survivor; the first request after that
  // dials the dead holder again, waits for the dial's timeout (5 s) and fails over.
  hung = createServer((s) => void held.push(s.on('error', () => undefined)));
  await new Promise<void>((r) => hung!.listen(edges[dead].tunnel, '127.0.0.1', r));
  // edge-b picks the least busy holder, and between two idle ones the first it lists: keep a
  // request open on the survivor so that the dead holder (no streams) is the one picked.
  execFile('curl', ['--silent', '-0', '--max-time', '40', '-H', 'Host: app.example.com', `http://127.0.0.1:${b.http}/slow`], () => undefined);
  for (const t0 = Date.now(); slow.length === 0 && Date.now() - t0 < 15_000; ) await new Promise((r) => setTimeout(r, 50));
  expect(slow.length).toBe(1);
  // Loop until edge-b fails over, not until the hung port takes a connection: the connector,
  // which was given the dead edge's address too, redials it and is held there as well.
  const failovers = b.proc.count(/Forwarding to another edge that holds the tunnel/);
  const failedOver = () => b.proc.count(/Forwarding to another edge that holds the tunnel/) > failovers;
  for (const t0 = Date.now(); !failedOver() && Date.now() - t0 < 20_000; ) {
    // HTTP/1.0: the per-request path (the fast path's failover is the test above).
    const r = await curl(b.http, '-0');
    expect(r).toMatch(/^HTTP\/1\.[01] 200/);
    expect(r).toContain('origin /x');
    expect(r).toMatch(new RegExp(`\\r\\nproxy-status: oxyctl; next-hop="${survivor}"\\r\\n`, 'i'));
  }
  expect(held.length).toBeGreaterThan(0);
  expect(failedOver()).toBe(true);
}, 45_000);
