// edge run --workers N: worker processes share the listeners (SO_REUSEPORT), a public
// connection that lands on a worker without a connection of its tunnel is handed to the worker
// that has one, a killed worker is restarted while the edge keeps serving, SIGTERM drains them
// all, and --workers 1 is the single process it always was.
import { readdirSync } from 'node:fs';
import { Agent, get } from 'node:http';
import { connect, createServer, type AddressInfo } from 'node:net';
import { oxyOk } from '../../helpers/cli.js';
import { expect, it } from 'vitest';
import { LOOPBACK_EDGE, OxyProcess, startConnector, useWebTunnel } from '../../helpers/processes.js';
import { until } from '../../helpers/until.js';

const t = useWebTunnel();

interface WorkerRow {
  worker: number;
  pid: number;
  ready: boolean;
  restarts: number;
  tunnelConnections?: number;
  httpRequests?: number;
  handoffs?: number;
}

/** One request on a connection of its own (so the kernel picks a worker for each); status and body. */
const hello = (port: number) =>
  new Promise<{ status: number; body: string }>((resolve) => {
    const req = get({ port, host: '127.0.0.1', path: '/', headers: { host: 'app.example.com' }, agent: false, timeout: 10_000 }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', () => resolve({ status: 0, body }));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve({ status: 0, body: '' }));
  });

const workers = async (metrics: number): Promise<WorkerRow[]> => {
  const res = await fetch(`http://127.0.0.1:${metrics}/workers`);
  return (await res.json()) as WorkerRow[];
};

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function startWorkers(home: string) {
  const edge = new OxyProcess(home, [...LOOPBACK_EDGE, '--workers', '2']);
  const running = await edge.waitFor(/Edge running metrics=127\.0\.0\.1:(\d+) workers=2/, 30_000);
  const tunnel = Number((await edge.waitFor(/Tunnel listener ready worker=1 protocol=http2 address=127\.0\.0\.1:(\d+)/))[1]);
  const http = Number((await edge.waitFor(/Public HTTP listener ready worker=1 address=127\.0\.0\.1:(\d+)/))[1]);
  return { edge, tunnel, http, metrics: Number(running[1]) };
}

it('two workers serve a tunnel held by one of them through both, survive a killed worker, and stop together', async () => {
  const { edge, tunnel, http, metrics } = await startWorkers(t.home);
  t.procs.push(edge);
  expect(edge.output).toMatch(/Tunnel listener ready worker=2 protocol=http2 address=127\.0\.0\.1:(\d+)/);
  // One connection: exactly one worker holds the tunnel, the other must hand its clients over.
  const { connector } = await startConnector(t.home, tunnel, ['--ha-connections', '1', '--hello-world', 'web'], 1);
  t.procs.push(connector);
  await until(async () => (await workers(metrics)).some((w) => w.tunnelConnections === 1), 10_000, 'the tunnel connection in a worker', 100);
  // edge list: the edge the user started is one row, its 2 workers counted, their connections summed.
  await until(
    async () => {
      const lines = (await oxyOk(t.home, ['edge', 'list'])).trim().split('\n');
      return lines.length === 2 && /\bWORKERS\s+CONNECTIONS$/.test(lines[0]!) && /\s2\s+1$/.test(lines[1]!);
    },
    10_000,
    'edge list to show one edge with WORKERS 2 and CONNECTIONS 1',
    200,
  );
  const [listed, ...more] = JSON.parse(await oxyOk(t.home, ['edge', 'list', '-o', 'json'])) as {
    connections: number;
    workers: { id: string; connections: number }[];
  }[];
  expect(more).toEqual([]);
  expect(listed!.connections).toBe(1);
  expect(new Set(listed!.workers.map((w) => w.id)).size).toBe(2);
  expect(listed!.workers.map((w) => w.connections).sort()).toEqual([0, 1]);

  const results = await Promise.all(Array.from({ length: 60 }, () => hello(http)));
  expect(results.filter((r) => r.status === 200)).toHaveLength(60);
  expect(results.filter((r) => !r.body.includes('You created a tunnel')).map((r) => r.body.slice(0, 120))).toEqual([]);
  const rows = await workers(metrics);
  console.log('after 60 connections:', JSON.stringify(rows));
  const holder = rows.find((w) => w.tunnelConnections === 1)!;
  const other = rows.find((w) => w !== holder)!;
  // The kernel spread the 60 connections over both workers; the holder served them all.
  expect(other.handoffs).toBeGreaterThan(0);
  expect(holder.httpRequests).toBe(60);
  expect(other.httpRequests ?? 0).toBe(0);

  // A killed worker is restarted; the edge serves through it again.
  process.kill(other.pid, 'SIGKILL');
  await until(async () => (await workers(metrics)).every((w) => w.ready && alive(w.pid) && w.pid !== other.pid), 15_000, 'the killed worker restarted', 100);
  expect(edge.output).toMatch(new RegExp(`Edge worker died; restarting it worker=${other.worker} workerPid=${other.pid} code=null signal=SIGKILL`));
  const after = await Promise.all(Array.from({ length: 30 }, () => hello(http)));
  expect(after.filter((r) => r.status === 200)).toHaveLength(30);
  const restarted = (await workers(metrics)).find((w) => w.worker === other.worker)!;
  expect(restarted.restarts).toBe(1);
  expect(restarted.handoffs).toBeGreaterThan(0);

  // The holder killed: its tunnel connection goes with it; the connector registers again with a
  // worker and traffic flows again.
  process.kill(holder.pid, 'SIGKILL');
  await until(async () => (await hello(http)).status === 200, 20_000, 'traffic after the holding worker was killed', 200);

  await until(async () => (await workers(metrics)).every((w) => w.ready && w.pid !== holder.pid), 15_000, 'the holder restarted', 100);
  const pids = (await workers(metrics)).map((w) => w.pid);
  expect(await edge.stop('SIGTERM')).toBe(0);
  expect(pids.filter(alive)).toEqual([]);
  expect(edge.output).toContain('Shutting down the edge worker=1');
  expect(edge.output).toContain('Shutting down the edge worker=2');
}, 90_000);

/** `count` requests one after another on one kept-alive connection (a new one per call); their statuses. */
const keptAlive = (port: number, count: number) =>
  new Promise<number[]>((resolve) => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const statuses: number[] = [];
    const next = () => {
      if (statuses.length === count) return (agent.destroy(), resolve(statuses));
      const req = get({ port, host: '127.0.0.1', path: '/', headers: { host: 'app.example.com' }, agent, timeout: 10_000 }, (res) => {
        res.resume();
        res.on('end', () => (statuses.push(res.statusCode ?? 0), next()));
      });
      req.on('timeout', () => req.destroy());
      req.on('error', () => (statuses.push(0), next()));
    };
    next();
  });

/** The process's open file descriptors. */
const fds = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;

it("spreads a connector's HTTP/2 connections evenly over the workers; a kept-alive client handed to a sibling gets every answer, and no hand-off leaves an fd behind", async () => {
  const { edge, tunnel, http, metrics } = await startWorkers(t.home);
  t.procs.push(edge);
  const one = await startConnector(t.home, tunnel, ['--ha-connections', '1', '--hello-world', 'web'], 1);
  t.procs.push(one.connector);
  await until(async () => (await workers(metrics)).some((w) => w.tunnelConnections === 1), 10_000, 'the tunnel connection in a worker', 100);
  const other = (await workers(metrics)).find((w) => !w.tunnelConnections)!;
  const before = { primary: fds(edge.child.pid!), other: fds(other.pid) };
  // 16 connections of 5 requests each: about half land on the worker without the tunnel and are
  // handed over after their first head; the rest of their requests must reach the sibling intact.
  const statuses = (await Promise.all(Array.from({ length: 16 }, () => keptAlive(http, 5)))).flat();
  expect(statuses.filter((s) => s === 200)).toHaveLength(80);
  expect((await workers(metrics)).find((w) => w.pid === other.pid)!.handoffs).toBeGreaterThan(0);
  // Every hand-off closed its fd in the worker that handed it and in the primary that relayed it.
  await until(
    async () => fds(edge.child.pid!) <= before.primary && fds(other.pid) <= before.other,
    10_000,
    `fds back (primary ${before.primary}, worker ${before.other})`,
    100,
  );
  await one.connector.stop('SIGTERM');
  await until(async () => (await workers(metrics)).every((w) => !w.tunnelConnections), 10_000, 'the connection gone', 100);
  // The primary places each connection on the tunnel port in the worker holding the fewest.
  const four = await startConnector(t.home, tunnel, ['--ha-connections', '4', '--hello-world', 'web'], 4);
  t.procs.push(four.connector);
  await until(async () => (await workers(metrics)).reduce((n, w) => n + (w.tunnelConnections ?? 0), 0) === 4, 10_000, '4 connections in the workers', 100);
  expect((await workers(metrics)).map((w) => w.tunnelConnections)).toEqual([2, 2]);
}, 90_000);

/** A CONNECT through the proxy to 127.0.0.1:port in vnet lab; the first line the destination sent, or what went wrong. */
const tunnelled = (proxy: number, port: number) =>
  new Promise<string>((resolve) => {
    const s = connect(proxy, '127.0.0.1', () => s.write(`CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nOxy-Vnet: lab\r\n\r\n`));
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString()));
    s.setTimeout(10_000, () => s.destroy());
    s.on('error', () => undefined);
    s.on('close', () => resolve(/\r\n\r\n(.*)\n/s.exec(got)?.[1] ?? got.split('\r\n')[0]));
  });

it('a CONNECT reaching the worker without the tunnel is forwarded to the sibling that holds it', async () => {
  const banner = createServer((s) => {
    s.on('error', () => undefined);
    s.end('banner\n');
  });
  await new Promise<void>((r) => banner.listen(0, '127.0.0.1', r));
  const port = (banner.address() as AddressInfo).port;
  try {
    await oxyOk(t.home, ['vnet', 'add', 'lab']);
    await oxyOk(t.home, ['tunnel', 'create', 'dc1']);
    // Store data only: the traffic goes to 127.0.0.1, inside this /32.
    await oxyOk(t.home, ['tunnel', 'route', 'ip', 'add', '--vnet', 'lab', '127.0.0.1/32', 'dc1']);
    const edge = new OxyProcess(t.home, [
      ...['edge', 'run', '--tunnel-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--metrics', '127.0.0.1:0'],
      ...['--proxy-listen', '127.0.0.1:0', '--proxy-allow', '127.0.0.1/32', '--workers', '2'],
    ]);
    t.procs.push(edge);
    const metrics = Number((await edge.waitFor(/Edge running metrics=127\.0\.0\.1:(\d+) workers=2/, 30_000))[1]);
    const tunnel = Number((await edge.waitFor(/Tunnel listener ready worker=1 protocol=http2 address=127\.0\.0\.1:(\d+)/))[1]);
    const proxy = Number((await edge.waitFor(/CONNECT proxy listener ready worker=1 address=127\.0\.0\.1:(\d+)/))[1]);
    const { connector } = await startConnector(t.home, tunnel, ['--ha-connections', '1', '--hello-world', 'dc1'], 1);
    t.procs.push(connector);
    // The sibling learns from the primary that its sibling holds the tunnel (the store view would
    // show it only at its next reload): CONNECTs landing on both workers work within moments (the
    // word crosses two IPC hops, which a loaded machine can hold behind the connector's own ack).
    await until(
      async () => (await Promise.all(Array.from({ length: 8 }, () => tunnelled(proxy, port)))).every((l) => l === 'banner'),
      2_000,
      '8 CONNECTs through both workers right after the registration',
      100,
    );
    await until(
      async () => (await Promise.all([1, 2, 3, 4].map(() => tunnelled(proxy, port)))).every((l) => l === 'banner'),
      15_000,
      'CONNECTs through both workers',
      200,
    );
    const lines = await Promise.all(Array.from({ length: 30 }, () => tunnelled(proxy, port)));
    expect(lines.filter((l) => l === 'banner')).toHaveLength(30);
    const text = await (await fetch(`http://127.0.0.1:${metrics}/metrics`)).text();
    // Streams the worker without the tunnel sent to its sibling's own peer listener, not the shared port.
    expect(Number(/oxy_edge_forwarded_streams_total\{direction="out"\} (\d+)/.exec(text)?.[1])).toBeGreaterThan(0);
    expect(edge.output).toMatch(/Peer link to edge open worker=\d [^\n]*address=127\.0\.0\.1:(\d+)/);
    const dialed = Number(/Peer link to edge open worker=\d [^\n]*address=127\.0\.0\.1:(\d+)/.exec(edge.output)![1]);
    expect(dialed).not.toBe(tunnel);
    expect(edge.output).toMatch(new RegExp(`Tunnel listener ready worker=\\d protocol=peer address=127\\.0\\.0\\.1:${dialed}`));
  } finally {
    banner.close();
  }
}, 90_000);

it("a worker's restart leaves its siblings' QUIC connections alone (the primary holds the port's sockets)", async () => {
  const { edge, tunnel, metrics } = await startWorkers(t.home);
  t.procs.push(edge);
  const { connector } = await startConnector(t.home, tunnel, ['--ha-connections', '8', '--hello-world', 'web'], 8, 'quic');
  t.procs.push(connector);
  await until(async () => (await workers(metrics)).reduce((n, w) => n + (w.tunnelConnections ?? 0), 0) === 8, 10_000, '8 connections in the workers', 100);
  const rows = await workers(metrics);
  console.log('QUIC connections per worker:', rows.map((w) => w.tunnelConnections).join(' + '));
  // The worker holding fewer dies; the kernel must keep hashing the survivor's 4-tuples to it.
  const victim = rows.reduce((a, b) => ((a.tunnelConnections ?? 0) <= (b.tunnelConnections ?? 0) ? a : b));
  const before = connector.count(/Connection terminated/);
  process.kill(victim.pid, 'SIGKILL');
  await until(async () => (await workers(metrics)).every((w) => w.ready && w.pid !== victim.pid), 15_000, 'the worker restarted', 100);
  // The victim's connections are reset by its successor, which reads their packets from the same socket.
  await until(async () => connector.count(/Connection terminated/) - before >= (victim.tunnelConnections ?? 0), 20_000, "the victim's connections reset", 100);
  await until(async () => connector.count(/Registered tunnel connection/) >= 8 + (victim.tunnelConnections ?? 0), 20_000, 'the connector back at 8', 100);
  // No more than those: a restart that changed the group's members moved the survivor's too (all 8 were reset).
  expect(connector.count(/Connection terminated/) - before).toBe(victim.tunnelConnections ?? 0);
}, 90_000);

it('--workers 1 runs the edge in the one process, as before', async () => {
  const edge = new OxyProcess(t.home, [...LOOPBACK_EDGE, '--workers', '1']);
  t.procs.push(edge);
  const m = await edge.waitFor(/Edge running metrics=127\.0\.0\.1:(\d+)/, 30_000);
  expect(edge.output).not.toContain('worker=');
  const res = await fetch(`http://127.0.0.1:${m[1]}/workers`);
  expect(res.status).toBe(404);
  expect(await edge.stop('SIGTERM')).toBe(0);
}, 60_000);
