#!/usr/bin/env node
/**
 * Small requests through edge + connector processes over HTTP/2 (`http1` streams: one tunnel
 * stream per client connection), for A/B work on the per-request CPU (issue 16): every config
 * starts its own edge + connector pair on one origin, and the rounds alternate between them
 * (wrk, 32 keep-alive connections, 64-byte answers). Prints requests/s and CPU µs per request
 * of each process (/proc/PID/stat), with system calls per request when `--syscalls 1`
 * (perf stat on raw_syscalls:sys_enter, all threads of the process), and records perf
 * profiles with `--perf DIR` (the processes then run with --perf-basic-prof). The origin (one
 * for all configs) is measured the same way in each round: what it costs behind each tunnel.
 * `--ssh 1` adds OpenSSH's reverse tunnel as a config of its own (sshd / ssh in the edge /
 * connector columns), the same-run baseline of issue 16; a config with OXY_BENCH_QUICK=1 in its
 * env runs the quick tunnel (`tunnel --url`: edge and connector in one process, "edge" column).
 *
 *   npm run build && node bench/h1-small.js [--seconds 5] [--rounds 3] [--ssh 1] \
 *     [--protocol http2|quic] [--config NAME[@DIR][:ENV=V,ENV=V]]...   (default: one config, this build)
 *
 * e.g. `--config old@/tmp/oxy-old --config new`, or `--config js:OXY_H2_READAHEAD=js --config native`.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { arg, benchConfigs, cpuMicros, fmt, SERVERS, spawnUntil, startBenchPair, startSshReverse } from './lib/run.js';

const run = promisify(execFile);
const seconds = Number(arg('seconds', 5));
const rounds = Number(arg('rounds', 3));
const syscalls = arg('syscalls', '0') !== '0';
const perfDir = arg('perf', undefined);
/** The tunnel protocol of every config (`--protocol quic`), or per config with OXY_BENCH_PROTOCOL=quic in its env. */
const protocol = arg('protocol', 'http2');
const ssh = arg('ssh', '0') !== '0';
const dir = mkdtempSync(join(tmpdir(), 'oxy-h1-small-'));
const HOST = 'bench.example.com';
const children = [];

/** NAME[@DIR][:ENV=V,...] */
const configs = benchConfigs();

async function start(c, i, originUrl) {
  const nodeOptions = perfDir ? ['--perf-basic-prof'] : [];
  if (c.ssh) return { ...(await startSshReverse(dir, Number(new URL(originUrl).port), children)), host: undefined };
  if (c.env.OXY_BENCH_QUICK === '1') {
    const env = { ...process.env, OXY_HOME: join(dir, String(i)), NO_COLOR: '1', ...c.env };
    if (nodeOptions.length) env.NODE_OPTIONS = [env.NODE_OPTIONS ?? '', ...nodeOptions].join(' ');
    const quick = await spawnUntil(
      process.execPath,
      [c.bin, 'tunnel', '--url', originUrl, '--protocol', c.env.OXY_BENCH_PROTOCOL ?? protocol, '--loglevel', 'warn'],
      /^(http:\/\/\S+)$/m,
      { env },
    );
    children.push(quick.child);
    return { url: quick.match[1], pids: { edge: quick.child.pid }, host: undefined };
  }
  return { ...(await startBenchPair(c, { home: join(dir, String(i)), originUrl, protocol, nodeOptions, children, host: HOST })), host: HOST };
}

/** Voluntary context switches (sleeps: each is a wake-up later) of all threads of `pids`. */
const wakeups = (pids) => {
  let n = 0;
  for (const pid of [pids].flat())
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      try {
        n += Number(/\nvoluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/task/${task}/status`, 'utf8'))[1]);
      } catch {
        // the thread ended meanwhile
      }
    }
  return n;
};

/** perf stat counting system calls of `pids` (all their threads) for `secs`. */
const countSyscalls = (pids, secs) =>
  run('perf', ['stat', '-x', ',', '-e', 'raw_syscalls:sys_enter', '-p', [pids].flat().join(','), '--', 'sleep', String(secs)]).then(
    ({ stderr }) => Number(stderr.trim().split('\n').pop().split(',')[0]),
    () => Number.NaN,
  );

async function wrk(name, url, host, pids, round) {
  const args = ['-t2', '-c32', `-d${seconds}s`, ...(host ? ['-H', `Host: ${host}`] : []), `${url}/small`];
  await run('wrk', ['-t2', '-c32', '-d1s', ...args.slice(3)]); // warm-up
  const c0 = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, cpuMicros(p)]));
  const w0 = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, wakeups(p)]));
  const side = [];
  if (syscalls) for (const [k, p] of Object.entries(pids)) side.push(countSyscalls(p, seconds - 0.5).then((n) => [k, n]));
  if (perfDir)
    for (const [k, p] of Object.entries(pids))
      side.push(
        run('perf', [
          'record',
          '-e',
          'cpu-clock',
          '-g',
          '-o',
          join(perfDir, `${name}-${round}-${k}.data`),
          '-p',
          [p].flat().join(','),
          '--',
          'sleep',
          String(seconds - 0.5),
        ]).then(() => undefined),
      );
  const { stdout } = await run('wrk', args);
  const counted = Object.fromEntries((await Promise.all(side)).filter(Boolean));
  const requests = Number(/(\d+) requests in/.exec(stdout)[1]);
  const errors = /Non-2xx or 3xx responses: (\d+)/.exec(stdout);
  if (errors) throw new Error(`${name}: ${errors[1]} error responses`);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)[1]);
  const cpu = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, (cpuMicros(p) - c0[k]) / requests]));
  const wake = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, (wakeups(p) - w0[k]) / requests]));
  // Syscalls were counted for (seconds - 0.5) s: per request at the measured rate.
  const sys = Object.fromEntries(Object.entries(counted).map(([k, n]) => [k, n / (rps * (seconds - 0.5))]));
  return { rps, cpu, sys, wake };
}

try {
  console.log(
    `# http1 streams over ${protocol}, edge + connector processes, ${seconds} s of wrk x ${rounds} rounds, load ${fmt(loadavg()[0])}; columns edge / connector / origin`,
  );
  const origin = await spawnUntil(process.execPath, [SERVERS, 'http'], /ready (\d+)/);
  children.push(origin.child);
  const originUrl = `http://127.0.0.1:${origin.match[1]}`;
  if (ssh) configs.unshift({ name: 'ssh -R', ssh: true, env: {} });
  const pairs = [];
  for (const [i, c] of configs.entries()) pairs.push(await start(c, i, originUrl));
  const all = configs.map(() => []);
  for (let r = 0; r < rounds; r++) {
    const line = [];
    for (const [i, c] of configs.entries()) {
      const m = await wrk(c.name, pairs[i].url, pairs[i].host, { ...pairs[i].pids, origin: origin.child.pid }, r + 1);
      all[i].push(m);
      const per = (o, d) => ['edge', 'connector', 'origin'].map((k) => (o[k] === undefined ? '-' : fmt(o[k], d))).join(' / ');
      const sys = m.sys.edge !== undefined ? ` (syscalls ${per(m.sys, 2)})` : '';
      line.push(`${c.name}: ${fmt(m.rps, 0)}/s, µs/req ${per(m.cpu, 1)}, wake-ups ${per(m.wake, 2)}${sys}`);
    }
    console.log(`round ${r + 1} (load ${fmt(loadavg()[0])}): ${line.join(' | ')}`);
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  for (const [i, c] of configs.entries())
    console.log(
      `median ${c.name}: ${fmt(median(all[i].map((m) => m.rps)), 0)}/s, ${['edge', 'connector', 'origin']
        .filter((k) => all[i][0].cpu[k] !== undefined)
        .map((k) => `${k} ${fmt(median(all[i].map((m) => m.cpu[k])))} µs`)
        .join(', ')} per request`,
    );
} finally {
  for (const c of children) c.kill();
  rmSync(dir, { recursive: true, force: true });
}
