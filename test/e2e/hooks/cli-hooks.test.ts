import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { oxy, tempHome } from '../../helpers/cli.js';
import { OxyProcess, LOOPBACK_EDGE } from '../../helpers/processes.js';
import { until } from '../../helpers/until.js';
import { EXAMPLES, curl, receivedHeaders, startOrigin, type Origin } from './support.js';

// `oxyctl edge run --proxy-listen --hooks --trace-hooks` as a real process.
let home: string;
let cleanup: () => void;
let origin: Origin;

async function startProxyProcess(args: string[]): Promise<{ edge: OxyProcess; port: number }> {
  const edge = new OxyProcess(home, [...LOOPBACK_EDGE, '--proxy-listen', '127.0.0.1:0', '--proxy-allow', '127.0.0.0/8', ...args]);
  const m = await edge.waitFor(/CONNECT proxy listener ready address=127\.0\.0\.1:(\d+)/);
  await edge.waitFor(/Edge running/);
  return { edge, port: Number(m[1]) };
}

beforeAll(async () => {
  ({ home, cleanup } = tempHome());
  origin = await startOrigin();
});
afterAll(async () => {
  await origin?.close();
  cleanup();
});

describe('oxyctl edge run --hooks', () => {
  it('loads an example module and logs the hook order with --trace-hooks', async () => {
    const { edge, port } = await startProxyProcess(['--hooks', join(EXAMPLES, 'proxy-status.js'), '--trace-hooks']);
    try {
      await edge.waitFor(/Loaded hooks module=\S+proxy-status\.js families=newCtx,egress,http/);
      const r = await curl(['-v', '-p', '-x', `http://127.0.0.1:${port}`, `http://127.0.0.1:${origin.port}/`]);
      expect(r.code, r.stderr).toBe(0);
      expect(receivedHeaders(r.stderr)).toContain(`Proxy-Status: oxyctl; next-hop="127.0.0.1:${origin.port}"`);
      await edge.waitFor(
        /INF Hook trace connection=\d+ onramp=connect-proxy hooks=newCtx>egress\.handleConnectionEstablished>http\.handleProxyConnectResponse/,
      );
    } finally {
      await edge.stop();
    }
  });

  it('hands lifecycle.stateForRestart to the next process as parentState', async () => {
    const app = join(home, 'counter.js');
    writeFileSync(
      app,
      `let runs = 0;
export function start(settings, parentState) {
  runs = (parentState?.runs ?? 0) + 1;
  settings.log.info({ runs }, 'counter app started');
  return { lifecycle: { stateForRestart: () => ({ runs }) } };
}
`,
    );
    let { edge } = await startProxyProcess(['--hooks', app]);
    await edge.waitFor(/counter app started hooks=\S+ runs=1/);
    // Observed: a SIGTERM sent within a few ms of "Edge running" sometimes kills the process
    // with the default action (no "Shutting down" line) under parallel test load; reported
    // to the lead. Let the edge settle so this test checks the hand-over, not that race.
    await new Promise((r) => setTimeout(r, 300));
    const code = await edge.stop();
    expect(code, `signal ${edge.child.signalCode}\n${edge.output}`).toBe(0);
    ({ edge } = await startProxyProcess(['--hooks', app]));
    try {
      await edge.waitFor(/Loaded hooks .*parentState=true/);
      await edge.waitFor(/counter app started hooks=\S+ runs=2/);
    } finally {
      await edge.stop();
    }
  });

  it("gives a module a true eventLoopUtilization(): an idle edge's loop reads mostly idle", async () => {
    // Loading the addon turns libuv's idle-time metric off (one poll per wait); a module may shed
    // load by this figure, so the edge turns it back on before the module loads. The module logs
    // each 400 ms window's figure; the windows after the edge runs are idle ones.
    const app = join(home, 'elu.js');
    writeFileSync(
      app,
      `import { performance } from 'node:perf_hooks';
export function start(settings) {
  let last = performance.eventLoopUtilization();
  setInterval(() => {
    const now = performance.eventLoopUtilization();
    settings.log.info({ elu: performance.eventLoopUtilization(now, last).utilization.toFixed(3) }, 'elu window');
    last = now;
  }, 400).unref();
  return {};
}
`,
    );
    const { edge } = await startProxyProcess(['--hooks', app]);
    try {
      const running = edge.output.length;
      const idle = /elu window hooks=\S+ elu=([\d.]+)/g;
      await until(() => [...edge.output.slice(running).matchAll(idle)].length >= 3, 30_000, 'three windows after the edge runs');
      const figures = [...edge.output.slice(running).matchAll(idle)].map((m) => Number(m[1]));
      // An edge with nothing to do waits most of a window; without the metric every window reads 1.000.
      expect(Math.min(...figures), edge.output).toBeLessThan(0.9);
    } finally {
      await edge.stop();
    }
  });

  it('refuses a module with an unknown hook, naming it', async () => {
    const app = join(home, 'typo.js');
    writeFileSync(app, `export const start = () => ({ egress: { handleConection() {} } });\n`);
    const r = await oxy(home, ['edge', 'run', '--tunnel-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--metrics', '127.0.0.1:0', '--hooks', app]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/unknown hook egress\.handleConection \(known: dnsResolveOverride, handleUpstreamIps, handleConnection/);
  });
});
