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
 *  6, 7 the edge alone on core 0 (1 worker, then 2), wrk + connector + origin on core 1;
 *  8–12 each worker capped at --cap of a core (a cgroup each): unpinned 1 and 2 workers, 1 worker
 *    on core 0, 2 workers on cores 0 | 1, 1 worker on core 1.
 * The default runs 0 and 2 (`--configs`), then the side-by-side pairs (`--pairs 0,1`, `none`
 * skips them; root only: they need a cpu cgroup). A pair is a 1-worker and a 2-worker edge, each
 * with its own connector, origin and wrk (32 connections per worker), measured over the same
 * seconds (the rest of the machine moved CPU per request 2× between consecutive runs), every
 * worker capped at --cap (default 0.1) of a core: the edge is then what limits, its workers always
 * have requests waiting and seldom sleep, so CPU per request is the per-request work, not the cost
 * of waking up to drain half the load (what saturated runs on 2 shared cores show). Pair 0 is
 * unpinned; pair 1 is pinned (taskset): the 1-worker edge on core 0, the 2-worker edge's workers on
 * cores 0 and 1. Flat CPU per request: 2 workers serve 2× the requests/s at 1× the CPU per request.
 * `--rates 1000,2000` adds offered loads below saturation (wrk paced by bench/lib/paced.lua,
 * `--paced-configs`, `--paced-seconds`): CPU and wake-ups per request at the same rate.
 * It ends with a line per request = a + b × wake-ups per request over all runs, for system calls
 * (and CPU when the runs span a wide range of wake-ups).
 * Per run, the accounting that says where the edge's CPU goes: its CPU per request (primary +
 * workers, utime + stime from /proc/PID/stat; also ÷ the origin's, the yardstick for how busy the
 * machine was), the primary's part, each worker's CPU per request it served itself, read/write
 * system calls, wake-ups (voluntary context switches), preemptions and event-loop turns (epoll_pwait
 * calls, `perf stat` of a tracepoint, root) per request of the serving
 * processes (/proc/PID/io, status), the connector's CPU and system calls, hand-offs between
 * workers in the measured run, and wrk's socket errors (requests never answered).
 * `--configs 0,2` runs some of them; `--bin PATH` another build (A/B); `--node-flags
 * --perf-basic-prof --perf DIR` records the edge's processes per run.
 *
 * `--protocol quic` dials the edge over QUIC (its 4 connections hashed over the primary's UDP group, not placed).
 *
 *   npm run build && sudo node bench/workers.js [--seconds 5] [--rounds 3] [--warmup 5] [--protocol http2|quic] [--cap 0.1]
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
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
/** `--rates 1000,2000,4000`: offered loads (requests/s, paced wrk) measured below saturation; `--rates 0` skips them. */
const rates = arg('rates', '')
  .split(',')
  .map(Number)
  .filter((r) => r > 0);
/** Seconds per offered load (after one warm-up per edge at the highest). */
const pacedSeconds = Number(arg('paced-seconds', seconds));
const PACED_SCRIPT = fileURLToPath(new URL('./lib/paced.lua', import.meta.url));
/** Seconds of load before a side-by-side pair's measurement: capped workers JIT-compile slowly (5 s left TurboFan at 15–18 % of a 2-worker edge's samples, 1.24× the CPU per request; 20 s: 0.94–0.98×). */
const pairWarmup = Number(arg('pair-warmup', 20));
/** `--cap 0.1`: the capped configurations' CFS quota per worker, as a share of one core. */
const cap = Number(arg('cap', 0.1));
const capPct = Math.round(cap * 100);
/** Extra node flags for the edge (its workers inherit them), e.g. --perf-basic-prof for `perf record`. */
const nodeFlags = arg('node-flags', '').split(' ').filter(Boolean);
/** Whether `perf stat` can count the syscalls:sys_enter_epoll_pwait tracepoint (root, tracefs): event-loop turns per request. */
const TURNS = (() => {
  try {
    execFileSync('perf', ['stat', '-x', ',', '-e', 'syscalls:sys_enter_epoll_pwait', 'true'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
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

/**
 * CPU caps (`cap` configs): a cgroup of our own with a CFS quota, on cgroup v1's cpu hierarchy or
 * cgroup v2 with the cpu controller; undefined when neither is writable (those configs are skipped).
 */
const CGROUP = (() => {
  const v1 = '/sys/fs/cgroup/cpu';
  if (existsSync(`${v1}/cpu.cfs_quota_us`))
    return { root: v1, limit: (dir, share) => writeFileSync(`${dir}/cpu.cfs_quota_us`, String(Math.round(share * 100_000))) };
  const v2 = '/sys/fs/cgroup';
  if (existsSync(`${v2}/cgroup.subtree_control`) && readFileSync(`${v2}/cgroup.subtree_control`, 'utf8').includes('cpu'))
    return { root: v2, limit: (dir, share) => writeFileSync(`${dir}/cpu.max`, `${Math.round(share * 100_000)} 100000`) };
  return undefined;
})();
let cgroupSeq = 0;
/** Puts `pids` (whole processes) in a new cgroup allowed `share` of one core; returns its removal (once they exited). */
const capCpu = (pids, share) => {
  const dir = join(CGROUP.root, `oxy-bench-workers-${process.pid}-${++cgroupSeq}`);
  mkdirSync(dir);
  if (CGROUP.root.endsWith('/cpu')) writeFileSync(`${dir}/cpu.cfs_period_us`, '100000');
  CGROUP.limit(dir, share);
  for (const pid of pids) writeFileSync(`${dir}/cgroup.procs`, String(pid));
  return () => {
    try {
      rmdirSync(dir);
    } catch {
      // still has a task (a process that did not exit): left for the next boot
    }
  };
};
/** The middle value; of an even count, the mean of the two middle ones (two rounds: their mean, not the larger). */
const median = (xs) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

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

/** CPU time of processes so far in µs, every thread's, from the scheduler (/proc/PID/task/TID/schedstat: ns, not 10 ms ticks). */
const runMicros = (pids) => {
  let ns = 0;
  for (const pid of pids)
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      try {
        ns += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[0]);
      } catch {
        // a thread that ended between the listing and the read
      }
    }
  return ns / 1000;
};

/** The same for the processes' main threads only (the event loop: a request's own work; V8's background threads compile and mark). */
const mainMicros = (pids) => pids.reduce((sum, pid) => sum + Number(readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1000, 0);

/**
 * Starts an edge for `config` (its workers pinned or reniced as the config says, the load's side on
 * its cores), calls `fn` with a sampler, and stops it. `sample(wrkArgs, seconds)` runs wrk (on the
 * load's cores) and returns what the edge, connector and origin spent per request meanwhile.
 */
async function withEdge(config, originUrl, originPid, fn) {
  const e = await startEdge(config.workers, originUrl);
  const uncap = [];
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
    // A CPU cap: every worker in a cgroup of its own (two workers in one shared quota ran 4–8× the CPU per request: throttled in turns).
    if (config.cap) for (const pid of serving) uncap.push(capCpu([pid], config.cap));
    // The load's side (wrk, connector, origin) on cores of its own, or on every core.
    const rest = config.rest ?? ALL_CORES;
    pin(rest, e.connector.pid);
    pin(rest, originPid);
    const wrk = (args, d) => run('taskset', ['-c', rest, 'wrk', ...args, `-d${d}s`, '-H', `Host: ${HOST}`, `${e.url}/small`, ...(args.paced ?? [])]);
    const groups = { serving, primary: rows ? [e.edge.pid] : [], connector: [e.connector.pid], origin: [originPid] };
    const snapshot = () =>
      Object.fromEntries(
        Object.entries(groups).map(([k, pids]) => [k, { cpu: cpuMicros(pids), run: runMicros(pids), main: mainMicros(pids), ...activity(pids) }]),
      );
    const eachCpu = () => serving.map((p) => runMicros([p]));
    const sample = async (args, d, label) => {
      const startRows = await workerRows(e.metrics);
      const before = snapshot();
      const beforeEach = eachCpu();
      const t0 = process.hrtime.bigint();
      const perf =
        perfDir && label
          ? spawn('perf', ['record', '-e', 'cpu-clock', '-g', '-o', join(perfDir, `${label}.data`), '-p', family(e.edge.pid).join(',')], { stdio: 'ignore' })
          : undefined;
      // Event-loop turns: epoll_pwait calls of the serving processes (a tracepoint; root), counted by `perf stat`.
      let turnsOut = '';
      const turns = TURNS
        ? spawn('perf', ['stat', '-x', ',', '-e', 'syscalls:sys_enter_epoll_pwait', '-p', serving.join(',')], { stdio: ['ignore', 'ignore', 'pipe'] })
        : undefined;
      turns?.stderr.on('data', (d) => (turnsOut += d));
      const { stdout } = await wrk(args, d);
      if (perf) await new Promise((resolve) => (perf.once('exit', resolve), perf.kill('SIGINT')));
      if (turns) await new Promise((resolve) => (turns.once('exit', resolve), turns.kill('SIGINT')));
      const after = snapshot();
      const afterEach = eachCpu();
      const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
      const requests = Number(/(\d+) requests in/.exec(stdout)[1]);
      const errors = /Non-2xx or 3xx responses: (\d+)/.exec(stdout);
      if (errors) throw new Error(`${config.name}: ${errors[1]} error responses`);
      // Requests that never got an answer (a hand-off that lost bytes showed as read timeouts).
      const socketErrors = /Socket errors: (.*)/.exec(stdout);
      if (socketErrors) console.log(`  ${config.name}: wrk socket errors: ${socketErrors[1]}`);
      const endRows = await workerRows(e.metrics);
      const served = endRows?.map((w, i) => w.httpRequests - (startRows?.[i]?.httpRequests ?? 0)) ?? [requests];
      const per = (k, field) => (after[k][field] - before[k][field]) / requests;
      const latency = /Latency\s+([\d.]+)(us|ms|s)\b/.exec(stdout);
      return {
        rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)[1]),
        latencyMs: latency ? Number(latency[1]) * { us: 0.001, ms: 1, s: 1000 }[latency[2]] : NaN,
        edge: per('serving', 'cpu') + per('primary', 'cpu'),
        // The same from the scheduler's run time (ns, every thread): precise at low rates, where ticks are few.
        edgeRun: per('serving', 'run') + per('primary', 'run'),
        // The workers' event-loop threads alone: without JIT compiling and concurrent GC, which each process does for itself.
        edgeMain: per('serving', 'main'),
        primary: per('primary', 'cpu'),
        connector: per('connector', 'cpu'),
        connectorRun: per('connector', 'run'),
        origin: per('origin', 'cpu'),
        originRun: per('origin', 'run'),
        // System calls and wake-ups per request of the serving processes, and of the connector.
        calls: per('serving', 'reads') + per('serving', 'writes'),
        wakeups: per('serving', 'wakeups'),
        // epoll_pwait calls per request (about one per loop turn): how many requests a turn handles.
        turns: turns ? Number(/^(\d+),/m.exec(turnsOut)?.[1] ?? NaN) / requests : NaN,
        preempted: per('serving', 'preempted'),
        connectorCalls: per('connector', 'reads') + per('connector', 'writes'),
        // Each serving process's share of a core during the sample (pinned: the load on its core).
        busy: serving.map((_pid, i) => (afterEach[i] - beforeEach[i]) / 1e6 / elapsed),
        // Each serving process's CPU per request it served itself (scheduler run time).
        perWorker: served.map((n, i) => (afterEach[i] - beforeEach[i]) / Math.max(n, 1)),
        // Each worker: its CPU per request it served itself, requests, tunnel connections.
        share: served.map((n, i) => `${fmt((afterEach[i] - beforeEach[i]) / Math.max(n, 1), 0)}µs×${n}/${endRows?.[i]?.tunnelConnections ?? 4}c`).join(' + '),
        handoffs: endRows ? endRows.reduce((sum, w, i) => sum + (w.handoffs ?? 0) - (startRows?.[i]?.handoffs ?? 0), 0) : 0,
      };
    };
    return await fn(sample);
  } finally {
    await stop(e.connector);
    await stop(e.edge);
    for (const remove of uncap) remove();
  }
}

/** Saturation: wrk at full speed (warm-up, then --seconds). */
const measure = (config, originUrl, originPid, label) =>
  withEdge(config, originUrl, originPid, async (sample) => {
    const args = ['-t2', `-c${config.connections ?? 32}`];
    await sample(args, warmup); // warm-up: JIT, pools, windows
    return sample(args, seconds, label);
  });

/**
 * Side by side (`PAIRS`): two edges (a 1-worker one and a 2-worker one), each with its own
 * connector, origin and wrk, warmed up, then measured over the same seconds, so that both see the
 * same load from the rest of the machine (it moved CPU per request 2× between consecutive runs).
 */
const measureTogether = async (configs, origins, label) => {
  let arrived = 0;
  let open;
  const gate = new Promise((resolve) => (open = resolve));
  const barrier = () => (++arrived === configs.length && open(), gate);
  return Promise.all(
    configs.map((config, i) =>
      withEdge(config, origins[i].url, origins[i].pid, async (sample) => {
        // 32 connections per worker: each worker has as many requests waiting as the single one.
        const args = ['-t1', `-c${32 * config.workers}`];
        await sample(args, pairWarmup);
        await barrier();
        return sample(args, seconds, `${label}-${i}`);
      }),
    ),
  );
};

/**
 * Offered loads below saturation (`--rates`): PACED_CONNECTIONS wrk connections each wait a random
 * delay before every request (bench/lib/paced.lua), mean = connections / rate. One edge per
 * config, warmed up at the highest rate, then every rate in turn (ascending in odd rounds,
 * descending in even ones).
 */
const PACED_CONNECTIONS = 64;
const pacedArgs = (rate) => {
  const mean = (1000 * PACED_CONNECTIONS) / rate;
  const args = ['-t1', `-c${PACED_CONNECTIONS}`, '-s', PACED_SCRIPT];
  args.paced = ['--', String(Math.max(1, Math.round(mean / 2))), String(Math.max(1, Math.round((mean * 3) / 2)))];
  return args;
};
const measurePaced = (config, originUrl, originPid, order) =>
  withEdge(config, originUrl, originPid, async (sample) => {
    await sample(pacedArgs(Math.max(...order)), warmup);
    const out = new Map();
    for (const rate of order) out.set(rate, await sample(pacedArgs(rate), pacedSeconds));
    return out;
  });

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
  // The edge held to a CPU quota (a cgroup per worker, `--cap` of a core each), so that the edge, not the load's side,
  // is what limits: its workers always have requests waiting and rarely sleep, whatever their number.
  { name: `1 worker, capped at ${capPct} % of a core`, workers: 1, cap },
  { name: `2 workers, capped at ${capPct} % of a core each`, workers: 2, cap },
  { name: `1 worker on core 0, capped at ${capPct} %`, workers: 1, cap, pin: [0] },
  { name: `2 workers on cores 0 | 1, capped at ${capPct} % each`, workers: 2, cap, pin: [0, 1] },
  { name: `1 worker on core 1, capped at ${capPct} %`, workers: 1, cap, pin: [1] },
];
/** `--configs 0,2`: only those (by position above), for quicker A/B runs; `--configs none` skips them. */
const pick = (list, flag, dflt) => {
  const chosen = arg(flag, dflt);
  return chosen === 'none' ? [] : chosen ? chosen.split(',').map((i) => list[Number(i)]) : list;
};
const DEFAULT_CONFIGS = '0,2';
const CONFIGS = pick(ALL_CONFIGS, 'configs', DEFAULT_CONFIGS).filter((c) => {
  if (c.cap && !CGROUP) console.log(`skipped (no writable cpu cgroup): ${c.name}`);
  return !c.cap || CGROUP;
});
/**
 * Below saturation, at the same offered loads: the first is the baseline of the ratios. The
 * pinned ones describe the scaling: a worker per core with the load on both cores (each core's
 * share of the edge's work), and the edge alone on core 0 (1 worker, then 2 taking turns on it).
 */
const PACED_CONFIGS = pick(
  [
    { name: '1 worker', workers: 1 },
    { name: '2 workers', workers: 2 },
    { name: '2 workers, one core each (taskset 0 | 1)', workers: 2, pin: [0, 1] },
    { name: 'edge on core 0, load on 1: 1 worker', workers: 1, pin: [0], rest: '1' },
    { name: 'edge on core 0, load on 1: 2 workers', workers: 2, pin: [0, 0], rest: '1' },
  ],
  'paced-configs',
);

/**
 * Side by side, each worker capped at `--cap` of a core (a cgroup each): the edge, not the load's
 * side, is what limits, so its workers always have requests waiting and rarely sleep, whatever
 * their number: per-request work without the cost of waking up. Flat CPU per request means 2
 * workers serve 2× the requests/s of 1 at the same CPU per request. The pinned pair puts the
 * single worker and the 2-worker edge's first worker on core 0 (compared on the same core at the
 * same time) and its second worker on core 1.
 */
const PAIRS = (arg('pairs', '0,1') === 'none' || !CGROUP ? [] : arg('pairs', '0,1').split(',').map(Number)).map(
  (i) =>
    [
      {
        name: `capped at ${capPct} % of a core per worker`,
        configs: [
          { name: '1 worker', workers: 1, cap },
          { name: '2 workers', workers: 2, cap },
        ],
      },
      {
        name: `capped at ${capPct} %, pinned: 1 worker on core 0 | 2 workers on cores 0, 1`,
        configs: [
          { name: '1 worker', workers: 1, cap, pin: [0] },
          { name: '2 workers', workers: 2, cap, pin: [0, 1] },
        ],
      },
    ][i],
);

/** Least squares y = a + b·x over points [x, y]. */
const leastSquares = (points) => {
  const n = points.length;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  const sxx = points.reduce((s, [x]) => s + (x - mx) ** 2, 0);
  const b = sxx > 0 ? points.reduce((s, [x, y]) => s + (x - mx) * (y - my), 0) / sxx : 0;
  return { a: my - b * mx, b };
};

const label = (r, config) =>
  `${r}-${config.name.split(',')[0].replace(/ /g, '-')}${config.pin ? `-pin${config.pin.join('')}` : ''}${config.rest ? `-rest${config.rest}` : ''}${config.connections ? `-c${config.connections}` : ''}`;
const loadNow = () =>
  loadavg()
    .map((l) => fmt(l, 1))
    .join(' ');

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
  // The second edge of a side-by-side pair has an origin of its own.
  const origin2 = PAIRS.length ? await spawnTracked(process.execPath, [servers, 'http'], /ready (\d+)/) : undefined;
  const origins = [{ url: originUrl, pid: origin.child.pid }, ...(origin2 ? [{ url: `http://127.0.0.1:${origin2.match[1]}`, pid: origin2.child.pid }] : [])];
  console.log(`cores ${availableParallelism()}, load ${loadNow()} (a shared machine: read ratios within a round)`);
  const via = `through edge + connector (${protocol === 'quic' ? 'QUIC' : 'HTTP/2'}, 4 connections)`;
  if (CONFIGS.length) console.log(`saturated: wrk -t2 -c32 -d${seconds}s GET /small (64 bytes) ${via}, ${rounds} rounds`);
  if (PACED_CONFIGS.length && rates.length)
    console.log(
      `offered loads: wrk -t1 -c${PACED_CONNECTIONS} paced (bench/lib/paced.lua) at ${rates.join(', ')} req/s, ${pacedSeconds} s each, ${via}; CPU from schedstat`,
    );
  if (PAIRS.length)
    console.log(
      `side by side: a 1-worker and a 2-worker edge, each with its own connector, origin and wrk -t1 (32 connections per worker), measured over the same ${seconds} s after ${pairWarmup} s of warm-up; every worker capped at ${capPct} % of a core (cgroup), CPU from schedstat`,
    );
  if (!CGROUP) console.log('side-by-side pairs skipped: no writable cpu cgroup (run as root)');
  console.log('');
  const results = new Map(CONFIGS.map((c) => [c.name, []]));
  const pairs = new Map(PAIRS.map((p) => [p.name, []]));
  // paced.get(config name).get(rate) = samples, one per round
  const paced = new Map(PACED_CONFIGS.map((c) => [c.name, new Map(rates.map((rate) => [rate, []]))]));
  const loads = [];
  for (let r = 1; r <= rounds; r++) {
    for (const config of CONFIGS) {
      const m = await measure(config, originUrl, origin.child.pid, label(r, config));
      results.get(config.name).push(m);
      console.log(
        `round ${r}  ${config.name.padEnd(42)} ${fmt(m.rps, 0).padStart(6)} req/s  edge ${fmt(m.edge, 0).padStart(4)} µs/req (${fmt(m.edge / m.origin, 1)}× origin; primary ${fmt(m.primary, 1)})  connector ${fmt(m.connector, 0).padStart(4)}  origin ${fmt(m.origin, 0).padStart(3)}  | edge syscalls ${fmt(m.calls, 2)}/req, wake-ups ${fmt(m.wakeups, 2)}/req, preempted ${fmt(m.preempted, 2)}/req, loop turns ${fmt(m.turns, 2)}/req; connector syscalls ${fmt(m.connectorCalls, 2)}/req | per worker ${m.share}, ${m.handoffs} hand-offs`,
      );
    }
    for (const pair of PAIRS) {
      const [one, two] = await measureTogether(pair.configs, origins, `${r}-pair${PAIRS.indexOf(pair)}`);
      pairs.get(pair.name).push([one, two]);
      const show = (m) =>
        `${fmt(m.rps, 0).padStart(5)} req/s, ${fmt(m.edgeRun, 1)} µs/req (main threads ${fmt(m.edgeMain, 1)}; per worker ${m.perWorker.map((x) => fmt(x, 1)).join(' | ')}), wake-ups ${fmt(m.wakeups, 2)}, preempted ${fmt(m.preempted, 2)}, loop turns ${fmt(m.turns, 2)}, syscalls ${fmt(m.calls, 2)}/req`;
      console.log(
        `round ${r}  side by side, ${pair.name}:\n    1 worker  ${show(one)}\n    2 workers ${show(two)}  → ${fmt(two.rps / one.rps, 2)}× the requests/s, ${fmt(two.edgeRun / one.edgeRun, 2)}× the CPU per request (main threads ${fmt(two.edgeMain / one.edgeMain, 2)}×)`,
      );
    }
    const order = r % 2 ? [...rates].sort((x, y) => x - y) : [...rates].sort((x, y) => y - x);
    for (const config of rates.length ? PACED_CONFIGS : []) {
      const byRate = await measurePaced(config, originUrl, origin.child.pid, order);
      for (const [rate, m] of byRate) {
        paced.get(config.name).get(rate).push(m);
        console.log(
          `round ${r}  at ${String(rate).padStart(5)}/s  ${config.name.padEnd(42)} ${fmt(m.rps, 0).padStart(6)} req/s  edge ${fmt(m.edgeRun, 1).padStart(5)} µs/req  wake-ups ${fmt(m.wakeups, 2)}/req  preempted ${fmt(m.preempted, 2)}/req  syscalls ${fmt(m.calls, 2)}/req | connector ${fmt(m.connectorRun, 1)}  origin ${fmt(m.originRun, 1)} µs/req | busy ${m.busy.map((b) => `${fmt(100 * b, 0)}%`).join(' + ')} of a core, latency ${fmt(m.latencyMs, 2)} ms`,
        );
      }
    }
    loads.push(loadavg()[0]);
  }
  console.log(`\nload (1-minute average) after each round: ${loads.map((l) => fmt(l, 1)).join(', ')}`);
  if (CONFIGS.length) {
    const base = results.get(CONFIGS[0].name);
    console.log('\nsaturated, medians (in brackets: the median of the ratios to 1 worker in the same round)');
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
        )}×)  connector ${fmt(median(ms.map((m) => m.connector)), 0)} µs/req  syscalls ${fmt(median(ms.map((m) => m.calls)), 2)}/req  wake-ups ${fmt(median(ms.map((m) => m.wakeups)), 2)}/req  loop turns ${fmt(median(ms.map((m) => m.turns)), 2)}/req`,
      );
    }
  }
  const pacedBase = PACED_CONFIGS.length && rates.length ? paced.get(PACED_CONFIGS[0].name) : undefined;
  if (pacedBase) {
    console.log(`\noffered loads, medians (in brackets: the median of the same-round ratios to ${PACED_CONFIGS[0].name} at that rate)`);
    for (const rate of rates)
      for (const config of PACED_CONFIGS) {
        const ms = paced.get(config.name).get(rate);
        const base = pacedBase.get(rate);
        const inRound = (f) => median(ms.map((m, i) => f(m) / f(base[i])));
        console.log(
          `  at ${String(rate).padStart(5)}/s  ${config.name.padEnd(42)} ${fmt(median(ms.map((m) => m.rps)), 0).padStart(6)} req/s  edge ${fmt(median(ms.map((m) => m.edgeRun)), 1).padStart(5)} µs/req (${fmt(
            inRound((m) => m.edgeRun),
            2,
          )}×)  wake-ups ${fmt(median(ms.map((m) => m.wakeups)), 2)}/req (${fmt(
            inRound((m) => m.wakeups),
            2,
          )}×)  connector ${fmt(median(ms.map((m) => m.connectorRun)), 1)} µs/req (${fmt(
            inRound((m) => m.connectorRun),
            2,
          )}×)`,
        );
      }
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
  for (const [name, runs] of pairs) {
    if (!runs.length) continue;
    const med = (f) => fmt(median(runs.map(f)), 2);
    const pinned = runs[0][1].perWorker.length === 2 && name.includes('pinned');
    console.log(
      `  side by side, ${name}: 2 workers serve ${med(([a, b]) => b.rps / a.rps)}× the requests/s of 1 (2× is linear) at ${med(([a, b]) => b.edgeRun / a.edgeRun)}× the CPU per request (main threads ${med(([a, b]) => b.edgeMain / a.edgeMain)}×)` +
        `${pinned ? `, its worker on core 0 at ${med(([a, b]) => b.perWorker[0] / a.perWorker[0])}× the single worker beside it on core 0` : ''}; ` +
        `wake-ups ${med(([a]) => a.wakeups)} and ${med(([, b]) => b.wakeups)}/req, loop turns ${med(([a]) => a.turns)} and ${med(([, b]) => b.turns)}/req, read/write system calls ${med(([a]) => a.calls)} and ${med(([, b]) => b.calls)}/req`,
    );
  }
  if (alone !== undefined)
    console.log(
      `  the edge alone on core 0 (wrk, connector, origin on core 1): 2 workers cost ${fmt(alone, 2)}× the CPU per request of 1, waking ${fmt(wakeups, 2)}× as often per request`,
    );
  if (spread !== undefined) console.log(`  2 workers on a core each vs both on core 0: ${fmt(spread, 2)}× the requests/s`);
  // Capped: each worker held to `cap` of a core, so the edge is the bottleneck and never waits for work.
  const [c1, c2] = [`1 worker, capped at ${capPct} % of a core`, `2 workers, capped at ${capPct} % of a core each`];
  const capRps = ratio(c2, c1, (m) => m.rps);
  if (capRps !== undefined) {
    const wake = (name) => fmt(median(results.get(name).map((m) => m.wakeups)), 2);
    console.log(
      `  each worker capped at ${capPct} % of a core (requests always waiting; wake-ups ${wake(c1)} and ${wake(c2)}/req): 2 workers serve ${fmt(capRps, 2)}× the requests/s of 1 (2× is linear) at ${fmt(
        ratio(c2, c1, (m) => m.edgeRun),
        2,
      )}× the CPU per request`,
    );
  }
  const [p0, p01, p1] = [
    `1 worker on core 0, capped at ${capPct} %`,
    `2 workers on cores 0 | 1, capped at ${capPct} % each`,
    `1 worker on core 1, capped at ${capPct} %`,
  ];
  const pinRps = ratio(p01, p0, (m) => m.rps);
  if (pinRps !== undefined) {
    const both = results.get(p1)?.length ? median(results.get(p01).map((m, i) => m.rps / (results.get(p0)[i].rps + results.get(p1)[i].rps))) : undefined;
    // Each of the two workers against the single worker on the same core, CPU per request it served.
    const own = (core, single) =>
      results.get(single)?.length ? median(results.get(p01).map((m, i) => m.perWorker[core] / results.get(single)[i].perWorker[0])) : undefined;
    const [own0, own1] = [own(0, p0), own(1, p1)];
    console.log(
      `  pinned (taskset), ${capPct} % of each core: 2 workers on cores 0 | 1 serve ${fmt(pinRps, 2)}× the requests/s of 1 worker on core 0${both !== undefined ? `, ${fmt(both, 2)}× the sum of 1 worker on core 0 and 1 on core 1 run alone` : ''}; ` +
        `CPU per request ${fmt(
          ratio(p01, p0, (m) => m.edgeRun),
          2,
        )}× 1 worker on core 0's${own0 !== undefined ? ` (the worker on core 0: ${fmt(own0, 2)}× the single worker there` : ''}${own1 !== undefined ? `, on core 1: ${fmt(own1, 2)}×)` : own0 !== undefined ? ')' : ''}`,
    );
  }
  // What a request costs apart from waking up: µs/req = a + b × wake-ups/req over every run of each worker count.
  const samples = (workers) => [
    ...CONFIGS.filter((c) => c.workers === workers).flatMap((c) => results.get(c.name)),
    ...PACED_CONFIGS.filter((c) => c.workers === workers).flatMap((c) => [...paced.get(c.name).values()].flat()),
    ...[...pairs.values()].flat().map((pair) => pair[workers - 1]),
  ];
  const [s1, s2] = [samples(1), samples(2)];
  if (s1.length > 1 && s2.length > 1) {
    const line = (ms, f) => leastSquares(ms.map((m) => [m.wakeups, f(m)]));
    const [cpu1, cpu2, sys1, sys2] = [line(s1, (m) => m.edgeRun), line(s2, (m) => m.edgeRun), line(s1, (m) => m.calls), line(s2, (m) => m.calls)];
    const range = (ms) => `${fmt(Math.min(...ms.map((m) => m.wakeups)), 2)}–${fmt(Math.max(...ms.map((m) => m.wakeups)), 2)}`;
    const spread = (ms) => Math.max(...ms.map((m) => m.wakeups)) - Math.min(...ms.map((m) => m.wakeups));
    console.log(
      `  per request = a + b × wake-ups per request, least squares over every run (1 worker: ${s1.length} runs, wake-ups ${range(s1)}; 2 workers: ${s2.length}, ${range(s2)}):\n` +
        `    edge read/write system calls: 1 worker a ${fmt(sys1.a, 2)} + b ${fmt(sys1.b, 2)} per wake-up; 2 workers a ${fmt(sys2.a, 2)} + b ${fmt(sys2.b, 2)} (a: ${fmt(sys2.a / sys1.a, 2)}×)` +
        // CPU time moves with the rest of the machine's load: a line through a narrow range of wake-ups says nothing.
        (spread(s1) >= 0.3 && spread(s2) >= 0.3
          ? `\n    edge CPU: 1 worker a ${fmt(cpu1.a, 1)} µs + b ${fmt(cpu1.b, 0)} µs per wake-up; 2 workers a ${fmt(cpu2.a, 1)} + b ${fmt(cpu2.b, 0)} (a: ${fmt(cpu2.a / cpu1.a, 2)}×)`
          : ''),
    );
  }
  console.log(
    `  saturated runs on ${availableParallelism()} cores shared with wrk, the connector and the origin add the cost of sharing them (waking up, preemptions, fewer requests per loop turn: each of 2 workers drains its half); ` +
      'in the side-by-side pairs every worker always has requests waiting, so their ratios are the per-request work',
  );
} finally {
  await Promise.all(children.map(stop));
  rmSync(dir, { recursive: true, force: true });
}
