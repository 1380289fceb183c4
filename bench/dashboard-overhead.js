#!/usr/bin/env node
/**
 * What the web dashboard costs an edge under the tunnel bench's small-request load, as
 * ratios measured in the same run. Aim: ≤ 1.02 in total.
 *  1. Watching: one edge with `--dashboard-listen`; rounds alternate between one headless
 *     Chromium showing its Traffic view (live updates every second, two uPlot charts) and the
 *     same browser on about:blank (no event stream). Edge CPU per request, watched/unwatched.
 *     The same edge both ways: two separate edges differ by more than 2 % on a shared machine.
 *  2. Counting: with the dashboard on, the public on-ramp counts every request (a Map lookup
 *     and two socket byte counters): its cost per request, timed in this process on a real
 *     socket, as a share of the edge's CPU per request.
 *   npm run build && node bench/dashboard-overhead.js [--seconds 4] [--rounds 4] [--protocol http2]
 * Needs Debian's chromium (scripts/setup.sh) and playwright-core (a devDependency).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { chromium } from 'playwright-core';
import { arg, EDGE_RUN_LOOPBACK, fmt, spawnUntil, tunnelPortIn } from './lib/run.js';

const seconds = Number(arg('seconds', 4));
const rounds = Number(arg('rounds', 4));
const protocol = arg('protocol', 'http2');
const bin = fileURLToPath(new URL('../bin/run.js', import.meta.url));
const servers = fileURLToPath(new URL('./lib/servers.js', import.meta.url));
const HOST = 'bench.example.com';
const children = [];
const homes = [];

/**
 * CPU seconds a process has used so far, summed over its threads from schedstat (nanoseconds;
 * /proc/PID/stat counts 10 ms ticks, as coarse as the signal measured here).
 */
const cpuSeconds = (pid) =>
  readdirSync(`/proc/${pid}/task`).reduce((sum, tid) => {
    try {
      return sum + Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]) / 1e9;
    } catch {
      return sum; // a thread that ended meanwhile
    }
  }, 0);

/** An edge (with the dashboard or not), a connector and an origin, in a data directory of their own. */
async function setUp(dashboard) {
  const home = mkdtempSync(join(tmpdir(), 'oxy-bench-dash-'));
  homes.push(home);
  const env = { ...process.env, OXY_HOME: home, NO_COLOR: '1' };
  const oxy = (...args) => execFileSync(process.execPath, [bin, ...args], { env }).toString();
  oxy('edge', 'init');
  oxy('tunnel', 'create', 'bench');
  oxy('tunnel', 'route', 'dns', 'bench', HOST);
  const token = dashboard ? JSON.parse(oxy('edge', 'dashboard-token', '-o', 'json')).token : undefined;
  const origin = await spawnUntil(process.execPath, [servers, 'http'], /ready (\d+)/);
  children.push(origin.child);
  const edge = await spawnUntil(
    process.execPath,
    [bin, ...EDGE_RUN_LOOPBACK, ...(dashboard ? ['--dashboard-listen', '127.0.0.1:0'] : [])],
    dashboard ? /Dashboard ready .*url=(http:\/\/127\.0\.0\.1:\d+)\// : /Edge running/,
    { env },
  );
  children.push(edge.child);
  const tunnelPort = tunnelPortIn(edge.output());
  const httpPort = /Public HTTP listener ready address=127\.0\.0\.1:(\d+)/.exec(edge.output())[1];
  const connector = await spawnUntil(
    process.execPath,
    [bin, 'tunnel', 'run', '--edge', `127.0.0.1:${tunnelPort}`, '--protocol', protocol, '--url', `http://127.0.0.1:${origin.match[1]}`, 'bench'],
    /(Registered tunnel connection[^\n]*\n[\s\S]*){4}/,
    { env },
  );
  children.push(connector.child);
  return { home, edge, url: `http://127.0.0.1:${httpPort}`, dashboard: dashboard ? edge.match[1] : undefined, token };
}

/** The tunnel bench's small-request load (32 concurrent keep-alive GETs of 64 bytes) for `seconds`. */
async function load(url) {
  const pool = new Pool(url, { connections: 32, pipelining: 1 });
  const deadline = performance.now() + seconds * 1000;
  let done = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (performance.now() < deadline) {
        const res = await pool.request({ path: '/small', method: 'GET', headers: { host: HOST } });
        await res.body.dump();
        done++;
      }
    }),
  );
  await pool.close();
  return done;
}

let browser;
try {
  const s = await setUp(true);
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(s.dashboard);
  await page.getByLabel('Dashboard token').fill(s.token);
  await page.keyboard.press('Enter');
  await page.getByRole('link', { name: 'Tunnels' }).waitFor();
  const watch = async (on) => {
    if (on) {
      await page.goto(`${s.dashboard}#/traffic`);
      await page.getByTestId('requests-total').waitFor();
    } else await page.goto('about:blank');
  };

  await load(s.url); // warm-up: JIT, pools
  const total = { watched: { cpu: 0, requests: 0 }, unwatched: { cpu: 0, requests: 0 } };
  let seen = 0;
  for (let r = 0; r < rounds; r++) {
    // Alternate which goes first, so a trend in the machine's load falls on both.
    for (const watched of r % 2 ? [false, true] : [true, false]) {
      await watch(watched);
      const cpu0 = cpuSeconds(s.edge.child.pid);
      const requests = await load(s.url);
      const t = total[watched ? 'watched' : 'unwatched'];
      t.cpu += cpuSeconds(s.edge.child.pid) - cpu0;
      t.requests += requests;
      if (watched) seen = Number(await page.getByTestId('requests-total').textContent());
    }
  }
  const per = (t) => (t.cpu / t.requests) * 1e6;
  const loadedCpuPerSecond = total.unwatched.cpu / (rounds * seconds);

  // The dashboard's own work, without load: edge CPU per second watched minus unwatched.
  const idle = { watched: 0, unwatched: 0 };
  for (let r = 0; r < rounds; r++) {
    for (const watched of r % 2 ? [false, true] : [true, false]) {
      await watch(watched);
      const cpu0 = cpuSeconds(s.edge.child.pid);
      await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
      idle[watched ? 'watched' : 'unwatched'] += cpuSeconds(s.edge.child.pid) - cpu0;
    }
  }
  const dashboardMsPerSecond = ((idle.watched - idle.unwatched) / (rounds * seconds)) * 1000;

  // The per-request counting, on a real socket (its byte counters are getters over the handle).
  const { TrafficRecorder } = await import('../dist/engine/edge/traffic.js');
  const server = net.createServer((c) => c.on('error', () => undefined)).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const socket = net.connect(server.address().port, '127.0.0.1');
  await new Promise((r) => socket.once('connect', r));
  const recorder = new TrafficRecorder();
  const N = 2_000_000;
  let sink = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) {
    const mark = socket.bytesRead + socket.bytesWritten;
    recorder.http(i & 1 ? HOST : 'other.example.com', socket.bytesRead + socket.bytesWritten - mark + 64);
    sink += mark;
  }
  const countNs = Number(process.hrtime.bigint() - t0) / N;
  socket.destroy();
  server.close();

  const watching = dashboardMsPerSecond / 1000 / loadedCpuPerSecond;
  const counting = countNs / 1000 / per(total.unwatched);
  console.log(
    `# Dashboard overhead on an edge under small-request load (${protocol}, 32 concurrent), ${rounds}×2 rounds of ${seconds}s; 2 cores shared with other work${sink < 0 ? '' : ''}`,
  );
  console.log(
    `edge under load, browser on about:blank: ${fmt(per(total.unwatched))} µs CPU/request, ${fmt(total.unwatched.requests / (rounds * seconds), 0)} requests/s, ${fmt(loadedCpuPerSecond * 1000, 0)} ms CPU/s`,
  );
  console.log(
    `edge under load, browser on Traffic:     ${fmt(per(total.watched))} µs CPU/request, ${fmt(total.watched.requests / (rounds * seconds), 0)} requests/s (Chromium drawing the page competes for the same cores; the page counted ${seen})`,
  );
  console.log(
    `dashboard's own work (idle edge, watched − unwatched): ${fmt(dashboardMsPerSecond, 2)} ms CPU/s = ${fmt(watching * 100, 2)} % of the loaded edge's CPU`,
  );
  console.log(`per-request counting: ${fmt(countNs, 0)} ns = ${fmt(counting * 100, 2)} % of the edge's CPU/request`);
  console.log(
    `dashboard total: ${fmt(1 + watching + counting, 4)} × an edge without it (aim ≤ 1.02); under-load ratio with Chromium on the same cores: ${fmt(per(total.watched) / per(total.unwatched), 3)}`,
  );
} finally {
  await browser?.close();
  for (const c of children) c.kill('SIGKILL');
  for (const h of homes) rmSync(h, { recursive: true, force: true });
}
