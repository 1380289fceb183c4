#!/usr/bin/env node
/**
 * Reads `node bench/vnet-path.js --phases flows --timeline DIR`'s captures: one connection at a time
 * per path (tunnel, wireguard-go, veth), each a window from the client's connect to its close, with
 * every wake-up, switch, system call and packet of the processes on the path (device, edge,
 * connector, the host's server, wireguard-go's two, the client) and the packets the kernel queued or
 * received meanwhile, in µs from the connect.
 *   node bench/vnet-timeline.js DIR [--path tunnel|wireguard-go|veth] [--conn N] [--all 1]
 * Without --conn: per path, each connection's answer time and the summary of where it went (per
 * process: time on a CPU, waiting runnable, wake-ups; packets per device); --conn N prints connection
 * N's events one a line (system calls named; --all 1 keeps other processes' events in the window).
 */
import { createReadStream, existsSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { arg } from './lib/run.js';

const dir = process.argv[2];
if (!dir || dir.startsWith('--')) throw new Error('usage: node bench/vnet-timeline.js DIR [--path NAME] [--conn N] [--all 1]');
const only = arg('path', '');
const connArg = arg('conn', '');
const all = arg('all', '') === '1';
const hops = arg('hops', '') === '1';

/**
 * `--hops 1`: the marks of one connection's critical path, each the first event after the mark
 * before it (role, and a pattern of describe()'s text), per path; printed as µs from the connect,
 * the median over the connections where every mark was found, and the steps between marks.
 */
const MARKS = {
  tunnel: [
    ['connect', 'client', /^→ connect/],
    ['SYN into the device TUN', 'client', /^xmit oxywarp0/],
    ['edge runs', 'edge', /./],
    ['SYN into the edge TUN', 'edge', /^recv oxup0/],
    ['SYN-ACK to the device', 'edge', /^recv oxywarp0/],
    ['client runs', 'client', /./],
    ['request into the device TUN', 'client', /^xmit oxywarp0 len=(?!52)/],
    // The ACK alone may make the socket acceptable before the request comes: from the client's run.
    ['edge accepts', 'edge', /^← accept4 = \d/, 5],
    ['OPEN sent', 'edge', /^xmit to-dc/, 7],
    ['connector reads it', 'connector', /^← recvmmsg/],
    ['connector dials', 'connector', /^→ connect/],
    ['request to the host', 'connector', /^xmit lo len=(?!66|52|74|60)/, Math.max],
    ['server reads it', 'server', /^← read = [1-9]/],
    ['answer from the host', 'server', /^xmit lo len=(?!66|52)/],
    ['connector reads it', 'connector', /^← read = [1-9]/],
    ['answer to the edge', 'connector', /^xmit to-edge/],
    ['edge reads it', 'edge', /^← recvmmsg/],
    ['answer into the edge socket', 'edge', /^xmit oxup0 len=(?!52)/],
    ['answer to the device', 'edge', /^recv oxywarp0 len=(?!52)/],
    ['client reads it', 'client', /^← read = [1-9]/],
  ],
  'wireguard-go': [
    ['connect', 'client', /^→ connect/],
    ['SYN into the TUN', 'client', /^xmit wgv/],
    ['SYN to the host side', 'wg-dev', /^xmit to-dc/],
    ['SYN into the host TUN', 'wg-host', /^recv wgh/],
    ['SYN-ACK from the host TUN', 'wg-host', /^xmit to-dev/],
    ['SYN-ACK to the device', 'wg-dev', /^recv wgv/],
    ['client runs', 'client', /./],
    ['request into the TUN', 'client', /^xmit wgv\S* len=(?!52)/],
    ['request into the host TUN', 'wg-host', /^recv wgh\S* len=(?!52)/],
    ['server reads it', 'server', /^← read = [1-9]/],
    ['answer from the host', 'server', /^xmit wgh\S* len=(?!52)/],
    ['answer to the device', 'wg-dev', /^recv wgv\S* len=(?!52)/],
    ['client reads it', 'client', /^← read = [1-9]/],
  ],
  veth: [
    ['connect', 'client', /^→ connect/],
    ['SYN', 'client', /^xmit to-dc/],
    ['client runs', 'client', /./],
    ['request', 'client', /^xmit to-dc len=(?!66)/],
    ['server reads it', 'server', /^← read = [1-9]/],
    ['answer', 'server', /^xmit to-dev len=(?!66)/],
    ['client reads it', 'client', /^← read = [1-9]/],
  ],
};

// x86_64 system call numbers of the calls these processes make.
const NR = {
  0: 'read',
  1: 'write',
  3: 'close',
  7: 'poll',
  16: 'ioctl',
  17: 'pread64',
  18: 'pwrite64',
  19: 'readv',
  20: 'writev',
  23: 'select',
  24: 'sched_yield',
  28: 'madvise',
  35: 'nanosleep',
  41: 'socket',
  42: 'connect',
  43: 'accept',
  44: 'sendto',
  45: 'recvfrom',
  46: 'sendmsg',
  47: 'recvmsg',
  48: 'shutdown',
  49: 'bind',
  50: 'listen',
  51: 'getsockname',
  52: 'getpeername',
  54: 'setsockopt',
  55: 'getsockopt',
  72: 'fcntl',
  202: 'futex',
  228: 'clock_gettime',
  232: 'epoll_wait',
  233: 'epoll_ctl',
  257: 'openat',
  270: 'pselect6',
  271: 'ppoll',
  281: 'epoll_pwait',
  284: 'eventfd',
  288: 'accept4',
  290: 'eventfd2',
  295: 'preadv',
  296: 'pwritev',
  299: 'recvmmsg',
  307: 'sendmmsg',
  327: 'preadv2',
  328: 'pwritev2',
  426: 'io_uring_enter',
  441: 'epoll_pwait2',
  9: 'mmap',
  10: 'mprotect',
  11: 'munmap',
  12: 'brk',
  13: 'rt_sigaction',
  14: 'rt_sigprocmask',
  15: 'rt_sigreturn',
  39: 'getpid',
  186: 'gettid',
  318: 'getrandom',
  230: 'clock_nanosleep',
};

const LINE = /^\s*(.+?)\s+(\d+)\/(\d+)\s+\[(\d+)\]\s+(\d+)\.(\d+):\s+(\S+):\s*(.*)$/;

async function load(name) {
  const meta = JSON.parse(readFileSync(join(dir, `${name}.json`), 'utf8'));
  const roles = new Map([
    [meta.device, 'device'],
    [meta.edge, 'edge'],
    [meta.connector, 'connector'],
    [meta.server, 'server'],
    [meta.client, 'client'],
    ...meta.wg.map((p, i) => [p, i === 0 ? 'wg-dev' : 'wg-host']),
  ]);
  const wins = meta.conns.map(([a, b, c]) => ({ t0: BigInt(a), t1: b ? BigInt(b) : undefined, t2: BigInt(c), ev: [] }));
  let w = 0;
  // perf's order is per CPU buffer, nearly by time: collect per window, sort after. Read line by
  // line: with the machine's other processes in it the text can pass what one string holds.
  for await (const line of createInterface({ input: createReadStream(join(dir, `${name}.txt`)), crlfDelay: Infinity })) {
    const m = LINE.exec(line);
    if (!m) continue;
    const t = BigInt(m[5]) * 1_000_000_000n + BigInt(m[6]);
    let win;
    for (let i = Math.max(0, w - 1); i < wins.length; i++) {
      if (t < wins[i].t0 - 200_000n) break;
      if (t <= wins[i].t2) {
        win = wins[i];
        w = i;
        break;
      }
    }
    if (!win) continue;
    const pid = Number(m[2]);
    const tid = Number(m[3]);
    const role = roles.get(pid);
    const event = m[7];
    const rest = m[8];
    let keep = all || role !== undefined;
    if (!keep && event === 'sched:sched_wakeup') keep = roles.has(Number(/pid=(\d+)/.exec(rest)?.[1]));
    if (!keep && event === 'sched:sched_switch') {
      const next = Number(/next_pid=(\d+)/.exec(rest)?.[1]);
      const prev = Number(/prev_pid=(\d+)/.exec(rest)?.[1]);
      keep = roles.has(next) || roles.has(prev);
    }
    if (!keep && event.startsWith('net:')) keep = /^(swapper|ksoftirqd|kworker)/.test(m[1]);
    if (!keep) continue;
    win.ev.push({ t, cpu: Number(m[4]), comm: m[1].trim(), pid, tid, role: role ? (tid === pid ? role : `${role}:${m[1].trim()}`) : m[1].trim(), event, rest });
  }
  for (const win of wins) win.ev.sort((a, b) => (a.t < b.t ? -1 : a.t > b.t ? 1 : 0));
  return { meta, roles, wins };
}

const us = (t, t0) => Number(t - t0) / 1000;
const describe = (e, roles) => {
  switch (e.event) {
    case 'raw_syscalls:sys_enter': {
      const nr = /NR (\d+)/.exec(e.rest)?.[1];
      return `→ ${NR[nr] ?? `NR ${nr}`}`;
    }
    case 'raw_syscalls:sys_exit': {
      const m = /NR (\d+) = (-?\d+)/.exec(e.rest);
      return m ? `← ${NR[m[1]] ?? `NR ${m[1]}`} = ${m[2]}` : `← ${e.rest}`;
    }
    case 'sched:sched_wakeup': {
      const pid = Number(/pid=(\d+)/.exec(e.rest)[1]);
      const comm = /comm=(.*?) pid=/.exec(e.rest)[1];
      return `wakes ${roles.get(pid) ?? comm}/${pid} (cpu ${/target_cpu=(\d+)/.exec(e.rest)[1]})`;
    }
    case 'sched:sched_switch': {
      const [, prev, prevPid, state, next, nextPid] = /prev_comm=(.*?) prev_pid=(\d+) .*prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+)/.exec(e.rest);
      return `switch ${roles.get(Number(prevPid)) ?? prev}/${prevPid} (${state}) → ${roles.get(Number(nextPid)) ?? next}/${nextPid}`;
    }
    case 'net:net_dev_queue':
      return `xmit ${/dev=(\S+)/.exec(e.rest)[1]} len=${/len=(\d+)/.exec(e.rest)[1]}`;
    case 'net:netif_receive_skb':
      return `recv ${/dev=(\S+)/.exec(e.rest)[1]} len=${/len=(\d+)/.exec(e.rest)[1]}`;
    default:
      return `${e.event} ${e.rest}`;
  }
};

/** Per window: each role's time on a CPU and its wake-ups, packets per device. */
function summary(win, roles) {
  const on = new Map();
  const wakes = new Map();
  const since = new Map();
  const pkts = new Map();
  for (const e of win.ev) {
    if (e.event === 'sched:sched_switch') {
      const [, prevPid, nextPid] = /prev_pid=(\d+).*next_pid=(\d+)/.exec(e.rest).map(Number);
      const r = roles.get(prevPid);
      if (r && since.has(prevPid)) on.set(r, (on.get(r) ?? 0) + us(e.t, since.get(prevPid)));
      since.delete(prevPid);
      if (roles.has(nextPid)) since.set(nextPid, e.t);
    } else if (e.event === 'sched:sched_wakeup') {
      const r = roles.get(Number(/pid=(\d+)/.exec(e.rest)[1]));
      if (r) wakes.set(r, (wakes.get(r) ?? 0) + 1);
    } else if (e.event === 'net:net_dev_queue') {
      const d = /dev=(\S+)/.exec(e.rest)[1];
      pkts.set(d, (pkts.get(d) ?? 0) + 1);
    }
  }
  const f = (m, d = 0) => [...m].map(([k, v]) => `${k} ${v.toFixed(d)}`).join(', ');
  return `main threads on a CPU (µs): ${f(on)} | wake-ups: ${f(wakes)} | packets queued: ${f(pkts)}`;
}

for (const name of ['tunnel', 'wireguard-go', 'veth']) {
  if (only && only !== name) continue;
  if (!existsSync(join(dir, `${name}.json`)) || !existsSync(join(dir, `${name}.txt`))) continue;
  const { roles, wins } = await load(name);
  console.log(`## ${name}`);
  if (hops) {
    const marks = MARKS[name];
    const found = [];
    for (const win of wins) {
      // Each mark: the first matching event after the mark before it, or after mark `after` (an
      // index), or after the later of the two marks before it (`after` = Math.max).
      const at = [];
      const idx = [];
      for (let i = 0; i < marks.length; i++) {
        const [, role, re, after] = marks[i];
        const from = i === 0 ? 0 : after === Math.max ? Math.max(idx[i - 1], idx[i - 2]) + 1 : after !== undefined ? idx[after] + 1 : idx[i - 1] + 1;
        const k = win.ev.findIndex((e, j) => j >= from && (e.role === role || e.role.startsWith(`${role}:`)) && re.test(describe(e, roles)));
        if (k < 0) break;
        idx.push(k);
        at.push(us(win.ev[k].t, win.t0));
      }
      console.log(
        `connection ${wins.indexOf(win)}: ${at.length === marks.length ? at.map((t) => t.toFixed(0)).join(' ') : `marks found ${at.length} of ${marks.length}`}`,
      );
      if (at.length === marks.length) found.push(at);
    }
    const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
    if (found.length)
      marks.forEach(([what], i) => {
        const step = i === 0 ? NaN : median(found.map((at) => at[i] - at[i - 1]));
        console.log(
          `  ${what.padEnd(32)} at ${median(found.map((at) => at[i] - at[0]))
            .toFixed(0)
            .padStart(6)} µs${i ? `  (step ${step.toFixed(0)})` : ''}`,
        );
      });
    continue;
  }
  wins.forEach((win, i) => {
    if (connArg !== '' && Number(connArg) !== i) return;
    const answer = win.t1 ? us(win.t1, win.t0).toFixed(0) : '—';
    console.log(`connection ${i}: answer at ${answer} µs | ${summary(win, roles)}`);
    if (connArg === '') return;
    for (const e of win.ev) {
      // Only main threads' system calls (the rest: wake-ups and switches) unless --all.
      if (!all && e.event.startsWith('raw_syscalls') && e.pid !== e.tid && !e.role.startsWith('wg')) continue;
      console.log(`${us(e.t, win.t0).toFixed(1).padStart(9)} [${e.cpu}] ${e.role.padEnd(18)} ${describe(e, roles)}`);
    }
  });
}
