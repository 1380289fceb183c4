#!/usr/bin/env node
/**
 * One-stream bulk through edge + connector processes over HTTP/2 (`http1` streams), for A/B work
 * on the CPU per MB (issue 16): every config starts its own edge + connector pair on one origin,
 * and the rounds alternate between them, each a curl download (GET /bytes/N) and a chunked
 * upload (`curl -T -` from /dev/zero). Prints MB/s and CPU ms per MB of each process
 * (/proc/PID/stat, all threads), with system calls per MB when `--syscalls 1` (perf stat on
 * raw_syscalls:sys_enter) and perf profiles with `--perf DIR` (processes run with
 * --perf-basic-prof), `--strace DIR` writes `strace -c -f` counts per process (slow: counts only).
 *
 *   npm run build && node bench/h1-bulk.js [--mib 1024] [--rounds 3] [--dirs down,up] \
 *     [--fresh 1] [--protocol http2|quic] [--config NAME[@DIR][:ENV=V,ENV=V]]...   (default: one config, this build)
 * --fresh 1 starts new processes for every round (a process's CPU per MB can stay off its twin's).
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { monotonicSeconds, traceDelta } from './lib/quic-trace.js';
import { arg, benchConfigs, cpuMicros, fmt, rssMiB, SERVERS, spawnUntil, startBenchPair } from './lib/run.js';

/** The tunnel protocol of every config (`--protocol quic`), or per config with OXY_BENCH_PROTOCOL=quic in its env. */
const protocol = arg('protocol', 'http2');
const run = promisify(execFile);
const mib = Number(arg('mib', 1024));
const rounds = Number(arg('rounds', 3));
const dirs = String(arg('dirs', 'down,up')).split(',');
const syscalls = arg('syscalls', '0') !== '0';
const perfDir = arg('perf', undefined);
const straceDir = arg('strace', undefined);
const fresh = arg('fresh', '0') !== '0';
const gc = arg('gc', '0') !== '0';
/** `--trace MS`: QUIC only, each process's busiest connection's counters over each transfer (OXY_QUIC_TRACE=MS). */
const traceMs = Number(arg('trace', 0));
const GC_WATCH = new URL('./lib/gc-watch.cjs', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'oxy-h1-bulk-'));
const HOST = 'bench.example.com';
const MB = (mib * 1024 * 1024) / 1e6;
const children = [];

/** NAME[@DIR][:ENV=V,...] */
const configs = benchConfigs();

async function start(c, i, originUrl) {
  if (traceMs) c = { ...c, env: { OXY_QUIC_TRACE: String(traceMs), ...c.env } };
  const nodeOptions = perfDir ? ['--perf-basic-prof'] : [];
  if (gc) nodeOptions.push(`--require ${GC_WATCH}`);
  return startBenchPair(c, { home: join(dir, String(i)), originUrl, protocol, nodeOptions, children, host: HOST });
}

const countSyscalls = (pid) => {
  const p = spawn('perf', ['stat', '-x', ',', '-e', 'raw_syscalls:sys_enter', '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  p.stderr.on('data', (d) => (err += d));
  const done = new Promise((r) => p.on('exit', () => r(Number(err.trim().split('\n').pop().split(',')[0]))));
  return () => (p.kill('SIGINT'), done);
};

const record = (pid, file) => {
  const p = spawn('perf', ['record', '-e', 'cpu-clock', '-g', '-o', file, '-p', String(pid)], { stdio: 'ignore' });
  const done = new Promise((r) => p.on('exit', r));
  return () => (p.kill('SIGINT'), done);
};

/** One transfer: MB/s. */
function curl(url, op) {
  const out = ['-sSf', '-o', '/dev/null', '-H', `'Host: ${HOST}'`];
  const t0 = performance.now();
  const cmd =
    op === 'down'
      ? `curl ${out.join(' ')} '${url}/bytes/${mib * 1024 * 1024}'`
      : `head -c ${mib * 1024 * 1024} /dev/zero | curl ${out.join(' ')} -T - '${url}/sink'`;
  return run('sh', ['-c', cmd], { maxBuffer: 1 << 20 }).then(() => MB / ((performance.now() - t0) / 1000));
}

/** CPU µs so far of `pid`'s threads named `comm` (the connector's read-ahead relay: oxy-readahead). */
const threadMicros = (pid, comm) => {
  let ticks = 0;
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${task}/stat`, 'utf8');
      if (stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')) !== comm) continue;
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]);
    } catch {
      // the thread ended meanwhile
    }
  }
  return ticks * 10_000;
};

/** GC ms so far of `pid`'s threads by kind (bench/lib/gc-watch.cjs writes them every 200 ms). */
const gcTimes = (pid) => {
  const t = { major: 0, minor: 0, incr: 0, nmajor: 0, nminor: 0 };
  for (const f of readdirSync('/tmp').filter((f) => f.startsWith(`gc-${pid}-`) && f.endsWith('.json')))
    for (const [k, v] of Object.entries(JSON.parse(readFileSync(join('/tmp', f), 'utf8')))) if (k in t) t[k] += v;
  return t;
};

async function transfer(name, url, pids, op, round, pair) {
  const gc0 = { edge: gcTimes(pids.edge), connector: gcTimes(pids.connector) };
  const c0 = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, cpuMicros(p)]));
  const relay0 = threadMicros(pids.connector, 'oxy-readahead');
  const stops = [];
  if (syscalls) for (const [k, p] of Object.entries(pids)) stops.push([k, countSyscalls(p)]);
  if (perfDir) for (const [k, p] of Object.entries(pids)) stops.push([undefined, record(p, join(perfDir, `${name}-${op}-${round}-${k}.data`))]);
  if (straceDir)
    for (const [k, p] of Object.entries(pids)) {
      const t = spawn('strace', ['-c', '-f', '-o', join(straceDir, `${name}-${op}-${round}-${k}.txt`), '-p', String(p)], { stdio: 'ignore' });
      stops.push([undefined, () => (t.kill('SIGINT'), new Promise((r) => t.on('exit', r)))]);
    }
  await new Promise((r) => setTimeout(r, syscalls || perfDir || straceDir ? 300 : 0));
  const t0 = monotonicSeconds();
  const mbps = await curl(url, op);
  if (traceMs) {
    await new Promise((r) => setTimeout(r, 2 * traceMs));
    const t1 = monotonicSeconds();
    for (const [side, out] of [
      ['edge', pair.output()],
      ['connector', pair.connectorOutput()],
    ]) {
      const d = traceDelta(out, t0, t1);
      if (!d) continue;
      const per = (k) => fmt(d.delta[k] / MB, 2);
      console.log(
        `  trace ${name} ${op} ${side} (${d.key}): per MB sent ${per('sent')} recv ${per('recv')} flushes ${per('flushes')} stops cwnd/pacing/credit ${per('stopCwnd')}/${per('stopPacing')}/${per('stopBlocked')}+${per('stopData')}` +
          ` cwnd-wait ${per('cwndWaitUs')} us, timer acks ${per('timerAcks')} late ${per('timerLateUs')} us, answers ${per('answers')} at ${fmt(d.delta.answerUs / Math.max(1, d.delta.answers), 0)} us after a read, credit held ${per('creditHeld')}, writable waits ${per('writableWaits')};` +
          ` cwnd ${fmt(d.last.cwnd / 1e3, 0)} kB srtt ${fmt(d.last.srttUs, 0)} min ${fmt(d.last.minRttUs, 0)} us`,
      );
    }
  }
  const sys = {};
  for (const [k, stop] of stops) {
    const n = await stop();
    if (k) sys[k] = n / MB;
  }
  const cpu = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, (cpuMicros(p) - c0[k]) / 1000 / MB]));
  cpu.relay = (threadMicros(pids.connector, 'oxy-readahead') - relay0) / 1000 / MB;
  if (gc) await new Promise((r) => setTimeout(r, 300));
  const gcs = Object.fromEntries(
    Object.entries(gc0).map(([k, g0]) => {
      const g = gcTimes(pids[k]);
      return [
        k,
        `${fmt(g.major - g0.major, 0)}+${fmt(g.incr - g0.incr, 0)} ms major (${g.nmajor - g0.nmajor}), ${fmt(g.minor - g0.minor, 0)} ms minor (${g.nminor - g0.nminor})`,
      ];
    }),
  );
  return { mbps, cpu, sys, gcs };
}

try {
  console.log(`# one-stream bulk over ${protocol} http1 streams, edge + connector processes, ${mib} MiB x ${rounds} rounds, load ${fmt(loadavg()[0])}`);
  const origin = await spawnUntil(process.execPath, [SERVERS, 'http'], /ready (\d+)/);
  children.push(origin.child);
  const originUrl = `http://127.0.0.1:${origin.match[1]}`;
  const pairs = [];
  for (const [i, c] of configs.entries()) pairs.push(await start(c, i, originUrl));
  for (const [i] of configs.entries()) await curl(pairs[i].url, 'down'); // warm-up
  // BENCH_WRK=S in a config's env: S seconds of small requests (wrk, 32 connections) through its
  // pair first, as bench/peers.js runs them before its bulk transfers.
  for (const [i, c] of configs.entries())
    if (c.env.BENCH_WRK) await run('wrk', ['-t2', '-c32', `-d${c.env.BENCH_WRK}s`, '-H', `Host: ${HOST}`, `${pairs[i].url}/small`]);
  const all = configs.map(() => ({ down: [], up: [] }));
  for (let r = 0; r < rounds; r++) {
    if (fresh && r > 0) {
      // New processes for every round: one process can run ~1.7x the CPU per MB of its twin for
      // its whole life on this machine, which a per-pair A/B would read as the build's.
      for (const p of pairs) for (const pid of Object.values(p.pids)) process.kill(pid);
      for (const [i, c] of configs.entries()) pairs[i] = await start(c, `${i}-${r}`, originUrl);
      for (const [i] of configs.entries()) await curl(pairs[i].url, 'down');
    }
    for (const op of dirs) {
      const line = [];
      for (const [i, c] of configs.entries()) {
        const pids = { ...pairs[i].pids, origin: origin.child.pid };
        const m = await transfer(c.name, pairs[i].url, pids, op, r + 1, pairs[i]);
        all[i][op].push(m);
        const sys = m.sys.edge !== undefined ? ` syscalls/MB ${fmt(m.sys.edge, 0)} / ${fmt(m.sys.connector, 0)}` : '';
        const rss = `RSS ${fmt(rssMiB(pids.edge), 0)} / ${fmt(rssMiB(pids.connector), 0)} MiB`;
        const gcText = gc ? `, GC ${m.gcs.edge} / ${m.gcs.connector}` : '';
        line.push(
          `${c.name}: ${fmt(m.mbps, 0)} MB/s, ms/MB ${fmt(m.cpu.edge, 2)} / ${fmt(m.cpu.connector, 2)} (its relay thread ${fmt(m.cpu.relay, 2)}; origin ${fmt(m.cpu.origin, 2)})${sys}, ${rss}${gcText}`,
        );
      }
      console.log(`round ${r + 1} ${op} (load ${fmt(loadavg()[0])}): ${line.join(' | ')}`);
    }
  }
  if (arg('edge-log', undefined)) writeFileSync(arg('edge-log'), pairs.map((p) => p.output()).join('\n=====\n'));
  if (arg('connector-log', undefined)) writeFileSync(arg('connector-log'), pairs.map((p) => p.connectorOutput()).join('\n=====\n'));
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  for (const [i, c] of configs.entries())
    for (const op of dirs) {
      const ms = all[i][op];
      console.log(
        `median ${c.name} ${op}: ${fmt(median(ms.map((m) => m.mbps)), 0)} MB/s, edge ${fmt(median(ms.map((m) => m.cpu.edge)), 2)} + connector ${fmt(median(ms.map((m) => m.cpu.connector)), 2)} = ${fmt(median(ms.map((m) => m.cpu.edge + m.cpu.connector)), 2)} ms/MB`,
      );
    }
} finally {
  for (const c of children) c.kill();
  rmSync(dir, { recursive: true, force: true });
}
