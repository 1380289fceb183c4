// Node's TLS socket never recovers from a write that failed (nodejs/node#61304): an HTTP/2
// session on one stopped reading and never closed (the tunnel's fix: 67897be). The edge's other
// TLS listener facing the network is the dashboard's HTTPS (--dashboard-tls, HTTP/1.1). Here
// clients pipeline GETs of the front end's script and stop reading (SIGSTOP), so the dashboard's
// writes back up and it pauses their sockets (Node stops reading a socket whose answers wait),
// then die (SIGKILL: the kernel resets a socket with unread bytes). The reset reaches the edge
// through a failed write only; each socket must still close: the edge's open sockets return to
// what they were within seconds, and a good client is served all along.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import tls from 'node:tls';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { tempHome } from '../../helpers/cli.js';
import { killOnExit, OxyProcess, LOOPBACK_EDGE, openSockets } from '../../helpers/processes.js';
import { until } from '../../helpers/until.js';

const ROUNDS = 20;
/** Clients alive at once. */
const PARALLEL = 4;
/** 100 × the ~80 KB script (8 MB): past what the kernel buffers on loopback. */
const PIPELINED = 100;

let home: { home: string; cleanup: () => void };
let edge: OxyProcess;
let port: number;
let script: string;

beforeAll(async () => {
  home = tempHome();
  edge = new OxyProcess(home.home, [...LOOPBACK_EDGE, '--no-quic', '--dashboard-listen', '127.0.0.1:0', '--dashboard-tls']);
  port = Number((await edge.waitFor(/Dashboard ready .* url=https:\/\/127\.0\.0\.1:(\d+)\//))[1]);
  const page = await getOverTls('/');
  script = page.match(/src="(\/assets\/[^"]+\.js)"/)![1];
});

afterAll(async () => {
  await edge?.stop('SIGKILL');
  home?.cleanup();
});

/** A client process that pipelines the GETs and reads nothing; resolves once its requests are sent, with its local port. */
function greedyClient(): Promise<{ child: ChildProcess; clientPort: number }> {
  const code = `
    const tls = require('node:tls');
    const s = tls.connect({ port: ${port}, host: '127.0.0.1', rejectUnauthorized: false }, () => {
      s.pause();
      s.write('GET ${script} HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n\\r\\n'.repeat(${PIPELINED}), () => process.stdout.write(s.localPort + '\\n'));
    });
    s.on('error', () => undefined);
    // A paused socket keeps no event loop alive: this does, until the SIGKILL.
    setInterval(() => undefined, 60000);`;
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  killOnExit(child);
  return new Promise((resolve, reject) => {
    child.stdout!.once('data', (d: Buffer) => resolve({ child, clientPort: Number(d.toString().trim()) }));
    child.once('exit', () => reject(new Error('the client ended before its requests went')));
  });
}

/** Bytes the edge's socket to `clientPort` has not had acknowledged (ss's Send-Q); 0 when none is open. */
function sendQueue(clientPort: number): number {
  const out = execFileSync('ss', ['-tnH', 'state', 'established', `( sport = :${port} and dport = :${clientPort} )`], { encoding: 'utf8' });
  return Number(out.trim().split(/\s+/)[1] ?? 0);
}

/** A client killed while the edge's answers to it wait in the kernel; resolves with the bytes that waited. */
async function killWhileBackedUp(): Promise<number> {
  const { child, clientPort } = await greedyClient();
  // The edge fills the socket's buffers, then pauses it (its answers wait).
  await until(() => sendQueue(clientPort) > 0, 5000, `answers waiting on port ${clientPort}`, 50).catch(() => undefined);
  await new Promise((r) => setTimeout(r, 300));
  child.kill('SIGSTOP');
  const queued = sendQueue(clientPort);
  await new Promise((r) => setTimeout(r, 200));
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
  return queued;
}

it('dashboard HTTPS sockets reset under backed-up writes all close, and a good client is served meanwhile', async () => {
  // Warm: the first answers load code and buffers the later rounds reuse.
  await getOverTls('/');
  await killWhileBackedUp();
  await until(async () => (await getOverTls('/')).startsWith('HTTP/1.1 200 '), 5000, 'the dashboard answering');
  const before = openSockets(edge.child.pid!);

  let served = 0;
  let failed = 0;
  let stop = false;
  const good = (async () => {
    while (!stop) {
      const res = await getOverTls('/').catch((err: Error) => err.message);
      if (res.startsWith('HTTP/1.1 200 ')) served++;
      else failed++;
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  const queued: number[] = [];
  for (let round = 0; round < ROUNDS; round += PARALLEL) queued.push(...(await Promise.all(Array.from({ length: PARALLEL }, () => killWhileBackedUp()))));
  stop = true;
  await good;

  // Every client died with the edge's answers waiting on it (else the test proves nothing).
  expect(queued.filter((bytes) => bytes > 0)).toHaveLength(ROUNDS);
  expect(failed).toBe(0);
  expect(served).toBeGreaterThan(0);
  // A socket stuck on its failed write would hold its descriptor until the 120 s idle timeout.
  await until(() => openSockets(edge.child.pid!) <= before, 5000, "the edge's open sockets back to what they were", 100).catch(() => undefined);
  expect(openSockets(edge.child.pid!)).toBeLessThanOrEqual(before);
  expect(edge.child.exitCode).toBeNull();
}, 120_000);

/** One GET over a fresh TLS connection: the whole answer as text. */
function getOverTls(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false }, () =>
      s.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`),
    );
    let text = '';
    s.setTimeout(10_000, () => s.destroy(new Error(`GET ${path}: no answer in 10 s`)));
    s.setEncoding('latin1').on('data', (d: string) => (text += d));
    s.on('error', reject);
    s.on('close', () => resolve(text));
  });
}
