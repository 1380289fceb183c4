#!/usr/bin/env node
/**
 * `edge run --workers N` (issue 16): does the edge's CPU per request stay flat with more worker
 * processes, and how do requests/s scale with cores? Everything on loopback, started here, each
 * in a process of its own: an origin (bench/lib/servers.js http, GET /small = 64 bytes), one edge
 * per configuration and a connector over HTTP/2 with 4 HA connections (the primary places them
 * in the workers holding the fewest: 2 + 2). Load: wrk, 32 keep-alive connections, 2 threads,
 * --seconds per run after --warmup seconds of the same load. Configurations, run in alternating
 * --rounds (the machine is shared: read ratios within a round, and their medians):
 *  0 1 worker (the single process);
 *  1 1 worker with 16 wrk connections (fewer requests in flight per process, as each of two sees);
 *  2 2 workers, unpinned;
 *  3 2 workers pinned each to a core of its own (`taskset -a -cp 0` / `-cp 1`);
 *  4 2 workers pinned both to core 0;
 *  5 2 workers at nice 3: together they weigh one process with the scheduler (CFS shares CPU per
 *    thread: an extra busy process takes CPU from wrk, the connector and the origin);
 *  6, 7 the edge alone on core 0 (1 worker, then 2), wrk + connector + origin on core 1.
 * Per run, the accounting that says where the edge's CPU goes: its CPU per request (primary +
 * workers, utime + stime from /proc/PID/stat; also ÷ the origin's, the yardstick for how busy the
 * machine was), the primary's part, each worker's CPU per request it served itself, read/write
 * system calls, wake-ups (voluntary context switches) and preemptions per request of the serving
 * processes (/proc/PID/io, status), the connector's CPU and system calls, hand-offs between
 * workers in the measured run, and wrk's socket errors (requests never answered).
 * `--configs 0,2` runs some of them; `--bin PATH` another build (A/B); `--node-flags
 * --perf-basic-prof --perf DIR` records the edge's processes per run.
 *
 * `--protocol quic` dials the edge over QUIC (its 4 connections hashed over the primary's UDP group, not placed).
 *
 *   npm run build && node bench/workers.js [--seconds 5] [--rounds 3] [--warmup 5] [--protocol http2|quic]
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { arg, cpuMicros, family, fmt, spawnUntil } from './lib/run.js';

const run = promisify(execFile);
const seconds = Number(arg('seconds', 5));
const rounds = Number(arg('rounds', 3));
const protocol = arg('protocol', 'http2');
/** Seconds of load before each measurement: every worker JIT-compiles on its own, at its share of the load. */
const warmup = Number(arg('warmup', 5));
/** Extra node flags for the edge (its workers inherit them), e.g. --perf-basic-prof for `perf record`. */
const nodeFlags = arg('node-flags', '').split(' ').filter(Boolean);
/** `--perf DIR`: `perf record -e cpu-clock -g` of the edge's processes during each measurement (DIR/<round>-<config>.data). */
const perfDir = arg('perf', '');
/** `--bin PATH`: another build's bin/run.js for the edge and connector (alternate old/new builds in A/B runs). */
const bin = arg('bin', fileURLToPath(new URL('../bin/run.js', import.meta.url)));
const servers = fileURLToPath(new URL('./lib/servers.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'oxy-workers-'));
const HOST = 'bench.example.com';
const children = [];
const env = { ...process.env, OXY_HOME: dir, NO_COLOR: '1' };
delete env.OXY_EDGE_WORKERS;

const spawnTracked = async (cmd, args, re) => {
  const p = await spawnUntil(cmd, args, re, { env });
  children.push(p.child);
  return p;
};

const stop = (child) =>
  new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', resolve);
    child.kill('SIGTERM');
  });

/**
 * What a process did so far, from /proc: read- and write-type system calls (its threads together;
 * libuv reads and writes sockets with read/readv/write/writev) and the times its main thread slept
 * and was woken (voluntary context switches: event-loop wake-ups, about).
 */
const activity = (pids) => {
  const sum = { reads: 0, writes: 0, wakeups: 0, preempted: 0 };
  for (const pid of pids) {
    const io = readFileSync(`/proc/${pid}/io`, 'utf8');
    sum.reads += Number(/syscr: (\d+)/.exec(io)[1]);
    sum.writes += Number(/syscw: (\d+)/.exec(io)[1]);
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    sum.wakeups += Number(/\nvoluntary_ctxt_switches:\s+(\d+)/.exec(status)[1]);
    sum.preempted += Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(status)[1]);
  }
  return sum;
};

const ALL_CORES = `0-${availableParallelism() - 1}`;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function startEdge(workers, originUrl) {
  const edge = await spawnTracked(
    process.execPath,
    [
      ...nodeFlags,
      bin,
      'edge',
      'run',
      '--tunnel-listen',
      '127.0.0.1:0',
      '--http-listen',
      '127.0.0.1:0',
      '--metrics',
      '127.0.0.1:0',
      '--workers',
      String(workers),
    ],
    /Edge running metrics=127\.0\.0\.1:(\d+)/,
  );
  const out = edge.output();
  const tunnelPort = new RegExp(`Tunnel listener ready (?:worker=1 )?protocol=${protocol} address=127\\.0\\.0\\.1:(\\d+)`).exec(out)[1];
  const httpPort = /Public HTTP listener ready (?:worker=1 )?address=127\.0\.0\.1:(\d+)/.exec(out)[1];
  const connector = await spawnTracked(
    process.execPath,
    [bin, 'tunnel', 'run', '--edge', `127.0.0.1:${tunnelPort}`, '--protocol', protocol, '--url', originUrl, 'bench'],
    /(Registered tunnel connection[^\n]*\n[\s\S]*){4}/,
  );
  return { edge: edge.child, connector: connector.child, url: `http://127.0.0.1:${httpPort}`, metrics: `http://127.0.0.1:${edge.match[1]}` };
}

const workerRows = async (metrics) => {
  const res = await fetch(`${metrics}/workers`);
  return res.ok ? res.json() : undefined;
};

async function measure(config, originUrl, originPid, label) {
  const e = await startEdge(config.workers, originUrl);
  try {
    const rows = await workerRows(e.metrics);
    // The processes that serve requests (the workers, or the single process), apart from the primary.
    const serving = rows?.map((w) => w.pid) ?? [e.edge.pid];
    const pin = (cpus, pid) => execFileSync('taskset', ['-a', '-cp', cpus, String(pid)], { stdio: 'ignore' });
    if (config.pin) serving.forEach((pid, i) => pin(String(config.pin[i]), pid));
    // Each worker's weight with the scheduler (every thread of it): `nice` 3 ≈ half of nice 0's (CFS).
    if (config.nice)
      for (const pid of serving)
        for (const task of readdirSync(`/proc/${pid}/task`)) execFileSync('renice', ['-n', String(config.nice), '-p', task], { stdio: 'ignore' });
    // The load's side (wrk, connector, origin) on cores of its own, or on every core.
    const rest = config.rest ?? ALL_CORES;
    pin(rest, e.connector.pid);
    pin(rest, originPid);
    const wrk = (d) => run('taskset', ['-c', rest, 'wrk', '-t2', `-c${config.connections ?? 32}`, `-d${d}s`, '-H', `Host: ${HOST}`, `${e.url}/small`]);
    await wrk(warmup); // warm-up: JIT, pools, windows
    const groups = { serving, primary: rows ? [e.edge.pid] : [], connector: [e.connector.pid], origin: [originPid] };
    const snapshot = () => Object.fromEntries(Object.entries(groups).map(([k, pids]) => [k, { cpu: cpuMicros(pids), ...activity(pids) }]));
    const eachCpu = () => serving.map((p) => cpuMicros([p]));
    const startRows = await workerRows(e.metrics);
    const before = snapshot();
    const beforeEach = eachCpu();
    const perf = perfDir
      ? spawn('perf', ['record', '-e', 'cpu-clock', '-g', '-o', join(perfDir, `${label}.data`), '-p', family(e.edge.pid).join(',')], { stdio: 'ignore' })
      : undefined;
    const { stdout } = await wrk(seconds);
    if (perf) await new Promise((resolve) => (perf.once('exit', resolve), perf.kill('SIGINT')));
    const after = snapshot();
    const afterEach = eachCpu();
    const requests = Number(/(\d+) requests in/.exec(stdout)[1]);
    const errors = /Non-2xx or 3xx responses: (\d+)/.exec(stdout);
    if (errors) throw new Error(`${config.name}: ${errors[1]} error responses`);
    // Requests that never got an answer (a hand-off that lost bytes showed as read timeouts).
    const socketErrors = /Socket errors: (.*)/.exec(stdout);
    if (socketErrors) console.log(`  ${config.name}: wrk socket errors: ${socketErrors[1]}`);
    const endRows = await workerRows(e.metrics);
    const served = endRows?.map((w, i) => w.httpRequests - (startRows?.[i]?.httpRequests ?? 0)) ?? [requests];
    const per = (k, field) => (after[k][field] - before[k][field]) / requests;
    return {
      rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)[1]),
      edge: per('serving', 'cpu') + per('primary', 'cpu'),
      primary: per('primary', 'cpu'),
      connector: per('connector', 'cpu'),
      origin: per('origin', 'cpu'),
      // System calls and wake-ups per request of the serving processes, and of the connector.
      calls: per('serving', 'reads') + per('serving', 'writes'),
      wakeups: per('serving', 'wakeups'),
      preempted: per('serving', 'preempted'),
      connectorCalls: per('connector', 'reads') + per('connector', 'writes'),
      // Each worker: its CPU per request it served itself, requests, tunnel connections.
      share: served.map((n, i) => `${fmt((afterEach[i] - beforeEach[i]) / Math.max(n, 1), 0)}µs×${n}/${endRows?.[i]?.tunnelConnections ?? 4}c`).join(' + '),
      handoffs: endRows ? endRows.reduce((sum, w, i) => sum + (w.handoffs ?? 0) - (startRows?.[i]?.handoffs ?? 0), 0) : 0,
    };
  } finally {
    await stop(e.connector);
    await stop(e.edge);
  }
}

const ALL_CONFIGS = [
  { name: '1 worker', workers: 1 },
  // Half the load on one process: what each of two workers sees (fewer requests per wake-up).
  { name: '1 worker, 16 connections', workers: 1, connections: 16 },
  { name: '2 workers', workers: 2 },
  { name: '2 workers, one core each (taskset 0 | 1)', workers: 2, pin: [0, 1] },
  { name: '2 workers, both on core 0 (taskset 0)', workers: 2, pin: [0, 0] },
  // Two workers that together weigh what one process does with the scheduler (CFS shares CPU per thread).
  { name: '2 workers at nice 3 (together: 1 process)', workers: 2, nice: 3 },
  // The edge alone on core 0, wrk + connector + origin on core 1: its CPU per request without the load's processes beside it.
  { name: 'edge on core 0, load on 1: 1 worker', workers: 1, pin: [0], rest: '1' },
  { name: 'edge on core 0, load on 1: 2 workers', workers: 2, pin: [0, 0], rest: '1' },
];
/** `--configs 0,2`: only those (by position above), for quicker A/B runs. */
const CONFIGS = arg('configs')
  ? arg('configs')
      .split(',')
      .map((i) => ALL_CONFIGS[Number(i)])
  : ALL_CONFIGS;

try {
  for (const args of [
    ['edge', 'init'],
    ['tunnel', 'create', 'bench'],
    ['tunnel', 'route', 'dns', 'bench', HOST],
  ]) {
    execFileSync(process.execPath, [bin, ...args], { env, stdio: 'ignore' });
  }
  const origin = await spawnTracked(process.execPath, [servers, 'http'], /ready (\d+)/);
  const originUrl = `http://127.0.0.1:${origin.match[1]}`;
  console.log(
    `cores ${availableParallelism()}, load ${loadavg()
      .map((l) => fmt(l, 1))
      .join(' ')} (a shared machine: read ratios within a round)`,
  );
  console.log(`wrk -t2 -c32 -d${seconds}s GET /small (64 bytes) through edge + connector (HTTP/2, 4 connections), ${rounds} rounds\n`);
  const results = new Map(CONFIGS.map((c) => [c.name, []]));
  for (let r = 1; r <= rounds; r++) {
    for (const config of CONFIGS) {
      const m = await measure(
        config,
        originUrl,
        origin.child.pid,
        `${r}-${config.name.split(',')[0].replace(/ /g, '-')}${config.pin ? `-pin${config.pin.join('')}` : ''}${config.rest ? `-rest${config.rest}` : ''}${config.connections ? `-c${config.connections}` : ''}`,
      );
      results.get(config.name).push(m);
      console.log(
        `round ${r}  ${config.name.padEnd(42)} ${fmt(m.rps, 0).padStart(6)} req/s  edge ${fmt(m.edge, 0).padStart(4)} µs/req (${fmt(m.edge / m.origin, 1)}× origin; primary ${fmt(m.primary, 1)})  connector ${fmt(m.connector, 0).padStart(4)}  origin ${fmt(m.origin, 0).padStart(3)}  | edge syscalls ${fmt(m.calls, 2)}/req, wake-ups ${fmt(m.wakeups, 2)}/req, preempted ${fmt(m.preempted, 2)}/req; connector syscalls ${fmt(m.connectorCalls, 2)}/req | per worker ${m.share}, ${m.handoffs} hand-offs`,
      );
    }
  }
  const base = results.get(CONFIGS[0].name);
  console.log('\nmedians (in brackets: the median of the ratios to 1 worker in the same round)');
  for (const config of CONFIGS) {
    const ms = results.get(config.name);
    const rps = median(ms.map((m) => m.rps));
    const edge = median(ms.map((m) => m.edge));
    const rel = median(ms.map((m) => m.edge / m.origin));
    // The same ratios taken within each round (the machine's load changes between rounds).
    const inRound = (f) => median(ms.map((m, i) => f(m) / f(base[i])));
    console.log(
      `  ${config.name.padEnd(42)} ${fmt(rps, 0).padStart(6)} req/s (${fmt(
        inRound((m) => m.rps),
        2,
      )}×)  edge CPU ${fmt(edge, 0)} µs/req (${fmt(
        inRound((m) => m.edge),
        2,
      )}×), ${fmt(rel, 1)}× the origin's (${fmt(
        inRound((m) => m.edge / m.origin),
        2,
      )}×)  connector ${fmt(median(ms.map((m) => m.connector)), 0)} µs/req  syscalls ${fmt(median(ms.map((m) => m.calls)), 2)}/req  wake-ups ${fmt(median(ms.map((m) => m.wakeups)), 2)}/req`,
    );
  }
  // The scaling, in words, from the pinned runs (when they ran): same-round ratios' medians.
  const ratio = (a, b, f) => {
    const [x, y] = [results.get(a), results.get(b)];
    return x?.length && y?.length ? median(x.map((m, i) => f(m) / f(y[i]))) : undefined;
  };
  const [one, two] = ['edge on core 0, load on 1: 1 worker', 'edge on core 0, load on 1: 2 workers'];
  const alone = ratio(two, one, (m) => m.edge);
  const wakeups = ratio(two, one, (m) => m.wakeups);
  const spread = ratio('2 workers, one core each (taskset 0 | 1)', '2 workers, both on core 0 (taskset 0)', (m) => m.rps);
  console.log('\nScaling (medians of same-round ratios):');
  if (alone !== undefined)
    console.log(
      `  the edge alone on core 0 (wrk, connector, origin on core 1): 2 workers cost ${fmt(alone, 2)}× the CPU per request of 1, waking ${fmt(wakeups, 2)}× as often per request`,
    );
  if (spread !== undefined) console.log(`  2 workers on a core each vs both on core 0: ${fmt(spread, 2)}× the requests/s`);
  console.log(
    `  on ${availableParallelism()} cores shared with wrk, the connector and the origin, requests/s follow the box's total CPU per request; a worker per otherwise idle core is what scales`,
  );
} finally {
  await Promise.all(children.map(stop));
  rmSync(dir, { recursive: true, force: true });
}
