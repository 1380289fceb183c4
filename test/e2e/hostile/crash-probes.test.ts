// Issue 12 item 1: one request must never take the edge down. Each probe (a bad chunk size, a
// body or head cut short, then the client closes) goes to every HTTP listener of real edge
// processes — the quick tunnel, an edge with --hooks and the CONNECT proxy, the metrics
// listeners — and afterwards every process still runs, still serves, and never logged a crash.
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { oxyOk, tempHome } from '../../helpers/cli.js';
import { OxyProcess, startConnector, startEdge } from '../../helpers/processes.js';
import { crashProbes, goodGet, probe } from './support.js';

let home: { home: string; cleanup: () => void };
const procs: OxyProcess[] = [];
const ports: Record<string, number> = {};

beforeAll(async () => {
  home = tempHome();
  const hooks = join(home.home, 'hooks.js');
  // A hooks module with a request hook: the public listener runs its hooked path.
  writeFileSync(hooks, `export function start() { return { http: { handleRequest() {} } }; }\n`);
  await oxyOk(home.home, ['tunnel', 'create', 'web']);
  await oxyOk(home.home, ['tunnel', 'route', 'dns', 'web', 'app.example.com']);
  const quick = new OxyProcess(home.home, ['tunnel', '--hello-world', '--protocol', 'http2']);
  procs.push(quick);
  const e = await startEdge(home.home, ['--hooks', hooks, '--proxy-listen', '127.0.0.1:0', '--proxy-allow', '127.0.0.0/8']);
  procs.push(e.edge);
  const c = await startConnector(home.home, e.tunnelPort, ['--hello-world', 'web']);
  procs.push(c.connector);
  ports.quick = Number((await quick.waitFor(/^http:\/\/127\.0\.0\.1:(\d+)$/m))[1]);
  ports.hooked = e.httpPort;
  ports.proxy = Number((await e.edge.waitFor(/CONNECT proxy listener ready address=127\.0\.0\.1:(\d+)/))[1]);
  ports.edgeMetrics = Number((await e.edge.waitFor(/Edge running metrics=127\.0\.0\.1:(\d+)/))[1]);
  ports.connectorMetrics = c.metricsPort;
});

afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop('SIGKILL')));
  home?.cleanup();
});

describe('a probe then a close never crashes an HTTP listener', () => {
  it.each(['quick', 'hooked', 'proxy', 'edgeMetrics', 'connectorMetrics'])('%s', async (name) => {
    const port = ports[name];
    for (const chunks of crashProbes('app.example.com')) {
      await probe(port, chunks);
      await probe(port, chunks, { reset: true });
    }
    for (const p of procs) expect(p.child.exitCode, p.output).toBeNull();
    for (const p of procs) expect(p.output).not.toMatch(/Bug: |Error: |at .*\(node:/);
    // Still serving: the public listeners through the tunnel, the others their own pages.
    if (name === 'quick' || name === 'hooked')
      expect(await goodGet(port, 'app.example.com')).toMatchObject({ status: 200, body: expect.stringContaining('Congrats') });
    else if (name === 'proxy') expect((await goodGet(port, 'x')).status).toBe(400);
    else expect(await goodGet(port, 'x', '/healthcheck')).toEqual({ status: 200, body: 'OK\n' });
  });
});

describe('an uncaught exception is a bug, never a policy', () => {
  it('the edge logs it with its stack through the logger and exits 70 at once', async () => {
    const bug = join(home.home, 'bug.js');
    // A hooks module with a bug outside any hook call: nothing in the engine can catch it.
    writeFileSync(bug, `export function start() { setTimeout(() => { throw new Error('planted bug'); }, 300); return {}; }\n`);
    const edge = new OxyProcess(home.home, [
      'edge',
      'run',
      '--location',
      'bug',
      '--tunnel-listen',
      '127.0.0.1:0',
      '--http-listen',
      '127.0.0.1:0',
      '--metrics',
      '127.0.0.1:0',
      '--hooks',
      bug,
    ]);
    try {
      expect(await edge.exited()).toBe(70);
    } finally {
      edge.kill();
    }
    expect(edge.output).toMatch(/FTL Bug: uncaught exception; exiting \(please report this\) error="planted bug" stack=.*bug\.js/);
  });
});
