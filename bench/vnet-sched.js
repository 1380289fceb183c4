#!/usr/bin/env node
/**
 * Reads `node bench/vnet-path.js --sched DIR`'s captures (`perf record -a` of every switch and wake-up
 * through each tunnel round): per round, where the busy threads ran and what each waited for.
 *   node bench/vnet-sched.js DIR [--label bulk-0] [--top 10]
 * Per round (within the round's own start and end, written beside each capture):
 *  - each CPU's time by who held it (roles: the edge's, connector's and device's main threads and their
 *    other threads, iperf3's client and server, ksoftirqd, kworkers, other processes, idle);
 *  - each role's share of the round on CPU 0 / CPU 1, runnable but waiting, and its switch-ins and
 *    migrations; a main thread's sleeps by who woke it (count, total, median);
 *  - what the two CPUs held at the same time (the pairs of roles, by share of the round): e.g. the edge
 *    and the connector apart, or the edge beside an idle CPU while the connector waits behind iperf3.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { arg } from './lib/run.js';

const dir = process.argv[2];
if (!dir || dir.startsWith('--')) throw new Error('usage: node bench/vnet-sched.js DIR [--label LABEL] [--top N]');
const only = arg('label', '');
const top = Number(arg('top', 10));
const pids = JSON.parse(readFileSync(join(dir, 'pids.json'), 'utf8'));

const LINE = /^\s*(.*?)\s+(\d+)\/(\d+)\s+\[(\d+)\]\s+(\d+)\.(\d+):\s+sched:(sched_switch|sched_wakeup):\s+(.*)$/;
/** The events of one capture in order: { t (ns), cpu, tgid, tid, comm, kind, f (the trace's fields) }. */
const events = (data) => {
  const text = execFileSync('perf', ['script', '-i', data, '-F', 'comm,pid,tid,cpu,time,event,trace', '--ns'], {
    encoding: 'utf8',
    maxBuffer: 1 << 30,
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const out = [];
  for (const line of text.split('\n')) {
    const m = LINE.exec(line);
    if (!m) continue;
    const f = {};
    for (const kv of m[8].matchAll(/(\w+)=(\S*)/g)) f[kv[1]] = kv[2];
    out.push({ comm: m[1], tgid: Number(m[2]), tid: Number(m[3]), cpu: Number(m[4]), t: Number(m[5]) * 1e9 + Number(m[6]), kind: m[7], f });
  }
  return out;
};

const analyse = (label) => {
  const window = JSON.parse(readFileSync(join(dir, `${label}.json`), 'utf8'));
  const [start, end] = [Number(BigInt(window.start)), Number(BigInt(window.end))];
  const evs = events(join(dir, `${label}.data`));
  // Threads' processes and names, from every event whose current task they were.
  const tgidOf = new Map([[0, 0]]);
  const commOf = new Map([[0, 'idle']]);
  for (const e of evs) {
    tgidOf.set(e.tid, e.tgid);
    commOf.set(e.tid, e.comm);
    if (e.kind === 'sched_switch') commOf.set(Number(e.f.next_pid), e.f.next_comm);
  }
  const clientTgids = new Set([...tgidOf].filter(([tid, g]) => commOf.get(tid) === 'iperf3' && g !== pids.server).map(([, g]) => g));
  const role = (tid) => {
    if (tid === 0) return 'idle';
    const g = tgidOf.get(tid);
    const comm = commOf.get(tid) ?? '?';
    for (const k of ['edge', 'connector', 'device']) if (g === pids[k]) return tid === pids[k] ? k : `${k}-other`;
    if (g === pids.server) return 'iperf3-server';
    if (clientTgids.has(g)) return 'iperf3-client';
    if (comm.startsWith('ksoftirqd')) return 'ksoftirqd';
    if (comm.startsWith('kworker')) return 'kworker';
    if (g === undefined) return comm.startsWith('swapper') ? 'idle' : 'other';
    return 'other';
  };
  const cur = new Map(); // cpu → tid running
  const since = new Map(); // cpu → when it started (clipped to the window)
  const ran = new Map(); // role → [ns on cpu0, ns on cpu1]
  const waitAt = new Map(); // tid → runnable since
  const waited = new Map(); // role → ns runnable, not running
  const sleepAt = new Map(); // tid → asleep since
  const wakers = new Map(); // main role → waker role → [sleep ns…]
  const ins = new Map(); // role → switch-ins
  const migr = new Map(); // role → migrations
  const lastCpu = new Map(); // tid → cpu it last ran on
  const pairs = new Map(); // "a + b" → ns
  let lastT = start;
  const clip = (t) => Math.min(end, Math.max(start, t));
  const add = (m, k, v) => m.set(k, (m.get(k) ?? 0) + v);
  const pairsUpTo = (t) => {
    const dt = clip(t) - clip(lastT);
    if (dt > 0 && cur.size === 2) add(pairs, [role(cur.get(0)), role(cur.get(1))].sort().join(' + '), dt);
    lastT = t;
  };
  const mains = new Set(['edge', 'connector', 'iperf3-client', 'iperf3-server']);
  for (const e of evs) {
    pairsUpTo(e.t);
    const inWindow = e.t >= start && e.t <= end;
    if (e.kind === 'sched_wakeup') {
      const tid = Number(e.f.pid);
      if (sleepAt.has(tid)) {
        const r = role(tid);
        if (mains.has(r) && inWindow) {
          if (!wakers.has(r)) wakers.set(r, new Map());
          const w = wakers.get(r);
          const by = role(e.tid);
          if (!w.has(by)) w.set(by, []);
          w.get(by).push(e.t - sleepAt.get(tid));
        }
        sleepAt.delete(tid);
      }
      if (![...cur.values()].includes(tid) && !waitAt.has(tid)) waitAt.set(tid, e.t);
      continue;
    }
    const prev = Number(e.f.prev_pid);
    const next = Number(e.f.next_pid);
    const cpu = e.cpu;
    if (cur.has(cpu)) {
      const r = role(cur.get(cpu));
      if (!ran.has(r)) ran.set(r, [0, 0]);
      ran.get(r)[cpu] += Math.max(0, clip(e.t) - clip(since.get(cpu)));
    }
    if (prev !== 0) {
      if (e.f.prev_state?.startsWith('R')) waitAt.set(prev, e.t);
      else sleepAt.set(prev, e.t);
      lastCpu.set(prev, cpu);
    }
    if (next !== 0) {
      const r = role(next);
      if (waitAt.has(next)) {
        add(waited, r, Math.max(0, clip(e.t) - clip(waitAt.get(next))));
        waitAt.delete(next);
      }
      if (inWindow) {
        add(ins, r, 1);
        if (lastCpu.has(next) && lastCpu.get(next) !== cpu) add(migr, r, 1);
      }
    }
    cur.set(cpu, next);
    since.set(cpu, e.t);
  }
  pairsUpTo(end);
  for (const [cpu, tid] of cur) {
    const r = role(tid);
    if (!ran.has(r)) ran.set(r, [0, 0]);
    ran.get(r)[cpu] += Math.max(0, end - clip(since.get(cpu)));
  }
  const wall = end - start;
  const pct = (ns) => `${((100 * ns) / wall).toFixed(0)}`;
  const lines = [`${label}: ${(wall / 1e9).toFixed(2)} s, ${evs.length} events`];
  const roles = [...ran.keys()].sort((a, b) => ran.get(b)[0] + ran.get(b)[1] - (ran.get(a)[0] + ran.get(a)[1]));
  lines.push(
    `  on CPU 0 / CPU 1, waiting, % of the round; switch-ins, migrations: ${roles
      .map((r) => `${r} ${pct(ran.get(r)[0])} / ${pct(ran.get(r)[1])}, ${pct(waited.get(r) ?? 0)}; ${ins.get(r) ?? 0}, ${migr.get(r) ?? 0}`)
      .join(' | ')}`,
  );
  const med = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  for (const [r, w] of wakers) {
    const total = [...w.values()].flat().reduce((a, b) => a + b, 0);
    lines.push(
      `  ${r} slept ${pct(total)} % in ${[...w.values()].flat().length} sleeps, woken by: ${[...w]
        .sort((a, b) => b[1].length - a[1].length)
        .map(([by, xs]) => `${by} ${xs.length} (${pct(xs.reduce((a, b) => a + b, 0))} %, median ${(med(xs) / 1e3).toFixed(0)} µs)`)
        .join(', ')}`,
    );
  }
  lines.push(
    `  the two CPUs at once, % of the round: ${[...pairs]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, v]) => `${k} ${pct(v)}`)
      .join(' | ')}`,
  );
  return lines.join('\n');
};

const labels = readdirSync(dir)
  .filter((f) => f.endsWith('.data') && existsSync(join(dir, f.replace(/\.data$/, '.json'))))
  .map((f) => f.replace(/\.data$/, ''))
  .filter((l) => !only || l === only);
for (const l of labels) console.log(analyse(l));
