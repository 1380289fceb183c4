#!/usr/bin/env node
/**
 * The product's main path, device → edge → tunnel → private host, against the same
 * client talking to the same host over a plain veth, in one run (needs root: it builds
 * network namespaces and removes them):
 *  - iperf3 throughput both ways (ratio to veth);
 *  - HTTP requests/s with keep-alive from the device (ratio to veth), and with a new connection
 *    per request (a new flow each: its setup cost);
 *  - time from `oxyctl tunnel route ip add` returning to the first routed connection;
 *  - the same iperf3 and requests/s through Debian's wireguard-go between the device and the
 *    host namespaces (userspace WireGuard over the same veth: the peer the issue names), when
 *    it is installed; configured over its UAPI socket, so wireguard-tools is not needed.
 *  - CPU per MB and per request in the device, edge and connector processes.
 *   npm run build && node bench/vnet-path.js [--seconds 5] [--rounds 3] [--protocol quic|http2]
 *     [--node-flags --perf-basic-prof --perf DIR]   (perf record of the three processes per phase)
 *     [--perf-event page-faults]   (what --perf samples; default cpu-clock)
 *     [--bin OTHER/bin/run.js]   (another build, e.g. a copy from before a change)
 *     [--phases bulk,requests,flows]   (a subset, for A/B runs of one phase)
 *     [--syscalls 1]   (perf stat: system calls, context switches and page faults per MB / request / connection;
 *                       packets per request / connection on the edge's and device's interfaces)
 *     [--syscalls read,write,...]   (the same, and each named system call apart)
 *     [--strace DIR]   (strace -c of each process per phase)
 *     [--log DIR]   (children's output to DIR/NAME-PID.log, phases marked: with --node-flags --trace-gc)
 *     [--quic-trace MS --log DIR]   (OXY_QUIC_TRACE=MS into DIR/quic-trace.log, phases and processes marked: cwnd, bytes
 *                   in flight, RTTs and why flushes stopped, per connection; node bench/quic-trace.js DIR/quic-trace.log reads it per round)
 *     [--sched DIR]   (perf record -a of the scheduler's switches and wake-ups in each tunnel round: node bench/vnet-sched.js DIR
 *                   prints, per round, where each busy thread ran, what it waited for and who woke it)
 *     [--directions up|down]   (bulk: one direction only)   [--wireguard 0]   (wireguard-go's rounds left out)
 *     [--timeline DIR [--timeline-count 8]]   (perf record -a of wake-ups, system calls and packets while the device
 *                   makes connections one at a time, per path: node bench/vnet-timeline.js DIR reads them hop by hop)
 *     [--each 1]   (each tunnel round's rate beside the veth's, and its CPU, system calls and context switches per unit:
 *                   a bimodal phase shows which rounds were slow and what they cost; and the edge's fast NAT packets
 *                   to the device, refused by its full socket and sent by JS, lost: oxy_edge_fast_nat_packets_total;
 *                   and its TUN ring's writes, io_uring_enter calls and reads (device TUNs', the upgrade TUN's) per unit:
 *                   oxy_edge_tun_ring_total;
 *                   and the whole machine's busy CPU per unit in the tunnel's and the veth's round, with its idle share:
 *                   what iperf3, the HTTP ends and the kernel's TCP cost beside our three — read it on a quiet machine;
 *                   and each of our three main threads' share of the round on a CPU, runnable but waiting for one, and
 *                   asleep (waiting for its sockets), from /proc/PID/task/PID/schedstat;
 *                   and the TCP counters of the device's namespace and of the edge's upgrade namespace in the round
 *                   (nstat -az: segments queued out of order, drops, DSACKs, retransmissions by kind), with the
 *                   device's segments and out-of-order ones in the veth's and wireguard-go's rounds apart)
 */
import { execFileSync, spawn } from 'node:child_process';
import { appendFileSync, closeSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { arg, cpuMicros, fmt } from './lib/run.js';

const seconds = Number(arg('seconds', 5));
/** Interleaved rounds of veth, tunnel and wireguard-go per measurement (medians are printed). */
const rounds = Number(arg('rounds', 3));
/** Extra node flags for edge, connector and device (e.g. --perf-basic-prof for `perf record`). */
const nodeFlags = (arg('node-flags', '') || '').split(' ').filter(Boolean);
// The product's default: `tunnel run` is --protocol auto, which is QUIC where UDP passes.
const protocol = arg('protocol', 'quic');
const phases = new Set(arg('phases', 'bulk,requests,flows').split(','));
/** `--bin PATH`: another build's bin/run.js, to compare builds in alternating runs. */
const bin = arg('bin', fileURLToPath(new URL('../bin/run.js', import.meta.url)));
/** `--quic-trace MS` (with `--log DIR`): the edge's and connector's OXY_QUIC_TRACE lines, into one file beside the logs. */
const quicTrace = arg('quic-trace', '');
const traceFile = quicTrace && arg('log', '') ? join(arg('log', ''), 'quic-trace.log') : '';
if (quicTrace && !traceFile) throw new Error('--quic-trace needs --log DIR: the trace goes to DIR/quic-trace.log (a child writing it to stderr stalls)');
const home = mkdtempSync(join(tmpdir(), 'oxy-vnet-bench-'));
const env = { ...process.env, OXY_HOME: home, NO_COLOR: '1' };
if (traceFile) Object.assign(env, { OXY_QUIC_TRACE: quicTrace, OXY_QUIC_TRACE_FILE: traceFile });
const tag = randomBytes(2).toString('hex');
const names = { edge: `oxyb-edge-${tag}`, dc: `oxyb-dc-${tag}`, dev: `oxyb-dev-${tag}` };
const sh = (cmd, args, input) => execFileSync(cmd, args, { encoding: 'utf8', input, env });
const ipn = (ns, ...args) => sh('ip', ['-n', ns, ...args]);
const inNs = (ns, cmd, args) => sh('ip', ['netns', 'exec', ns, cmd, ...args]);
const oxy = (...args) => sh(process.execPath, [bin, ...args]);
const children = [];
/** `--log DIR`: each child's stdout and stderr also go to DIR/<pid>.log (with `--node-flags --trace-gc`: GCs per phase). */
const logDir = arg('log', '');
const spawnIn = (ns, cmd, args, wait) =>
  new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let out = '';
    const log = logDir
      ? join(
          logDir,
          `${args.includes('edge') ? 'edge' : args.includes('tunnel') ? 'connector' : args.includes('warp') ? 'device' : cmd.split('/').pop()}-${child.pid}.log`,
        )
      : '';
    child.log = log;
    const on = (d) => {
      if (log) appendFileSync(log, d);
      if (out.length > 65536) return;
      out += d;
      if (wait.test(out)) resolve(child);
    };
    child.stdout.on('data', on);
    child.stderr.on('data', on);
    child.on('exit', (code) => reject(new Error(`${cmd} exited ${code}: ${out}`)));
    setTimeout(() => reject(new Error(`timeout waiting for ${wait}: ${out}`)), 30_000);
  });

const LOAD = `
const http = require('http');
const [host, ms, fresh] = [process.argv[1], Number(process.argv[2]), process.argv[3] === 'fresh'];
const agent = new http.Agent({ keepAlive: !fresh, maxSockets: 16 });
let done = 0; let failed = 0; const end = Date.now() + ms;
const one = () => new Promise((r) => http.get({ host, port: 80, path: '/', agent, headers: fresh ? { connection: 'close' } : {} }, (res) => { res.resume(); res.on('end', () => { done++; r(); }); }).on('error', () => { failed++; r(); }));
Promise.all(Array.from({ length: 16 }, async () => { while (Date.now() < end) await one(); })).then(() => { console.log(done / (ms / 1000), failed); process.exit(0); });`;

/** Median ms from connect to the end of the answer, one new connection at a time (latency of a flow's setup). */
const FIRST = `
const http = require('http');
const host = process.argv[1]; const times = [];
const one = () => new Promise((r) => { const t = performance.now(); http.get({ host, port: 80, path: '/', agent: false, headers: { connection: 'close' } }, (res) => { res.resume(); res.on('end', () => { times.push(performance.now() - t); r(); }); }).on('error', r); });
(async () => { for (let i = 0; i < 60; i++) await one(); times.sort((a, b) => a - b); console.log(times[times.length >> 1]); })();`;

/**
 * `--timeline DIR`: after the flows phase, for each path, `perf record -a` of the scheduler's wake-ups
 * and switches, every system call and every packet queued to or received from a device, while the
 * device makes `--timeline-count` connections one at a time, 100 ms apart (the path idle between, as
 * in the "one new connection at a time" line); the client prints each connection's start and answer
 * on the monotonic clock perf stamps with. bench/vnet-timeline.js reads them, hop by hop.
 */
const timelineDir = arg('timeline', '');
const timelineCount = Number(arg('timeline-count', 8));
const SPACED = `
const http = require('http');
const [host, n] = [process.argv[1], Number(process.argv[2])]; const conns = [];
const now = () => String(process.hrtime.bigint());
const one = () => new Promise((r) => { const t0 = now(); let t1; const q = http.get({ host, port: 80, path: '/', agent: false, headers: { connection: 'close' } }, (res) => { res.resume(); res.on('end', () => { t1 = now(); }); }); q.on('error', r); q.on('close', () => setTimeout(() => { conns.push([t0, t1, now()]); r(); }, 100)); });
(async () => { for (let i = 0; i < n; i++) await one(); console.log(JSON.stringify({ client: process.pid, conns })); })();`;
const timeline = async (name, target, pids) => {
  const data = join(timelineDir, `${name}.data`);
  const events = ['sched:sched_switch', 'sched:sched_wakeup', 'raw_syscalls:sys_enter', 'raw_syscalls:sys_exit', 'net:net_dev_queue', 'net:netif_receive_skb'];
  const perf = spawn('perf', ['record', '-a', '-k', 'CLOCK_MONOTONIC', '-e', events.join(','), '-o', data], { stdio: 'ignore' });
  const exited = new Promise((r) => perf.on('exit', r));
  execFileSync('sleep', ['1']);
  const run = JSON.parse(inNs(names.dev, process.execPath, ['-e', SPACED, target, String(timelineCount)]));
  perf.kill('SIGINT');
  await exited;
  writeFileSync(join(timelineDir, `${name}.json`), JSON.stringify({ target, ...pids, ...run }));
  // Straight to the file: with the machine's other processes in it, the text passes 512 MB.
  const out = openSync(join(timelineDir, `${name}.txt`), 'w');
  try {
    execFileSync('perf', ['script', '-i', data, '-F', 'comm,pid,tid,cpu,time,event,trace', '--ns'], { stdio: ['ignore', out, 'ignore'] });
  } finally {
    closeSync(out);
    rmSync(data, { force: true });
  }
};

/**
 * The whole machine's CPU so far, from /proc/stat's first line (clock ticks): busy (all but idle and
 * iowait) and all. Our three processes are not all a round costs: iperf3 or the HTTP client and
 * server at both ends and the kernel's TCP in every namespace share the same cores.
 */
const machineTicks = () => {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const all = f.slice(0, 8).reduce((a, b) => a + b, 0); // user … steal (guest is inside user)
  return { busy: all - f[3] - f[4], all };
};
/** Runs `work` and returns its result with the machine's busy CPU seconds and idle share meanwhile. */
const withMachine = (work) => {
  const before = machineTicks();
  const result = work();
  const after = machineTicks();
  const hz = 100;
  return { result, busy: (after.busy - before.busy) / hz, idle: 1 - (after.busy - before.busy) / Math.max(1, after.all - before.all) };
};

/**
 * A process's main thread (its event loop) so far, from /proc/PID/task/PID/schedstat: ns on a CPU and
 * ns runnable but waiting for one. With the round's wall time, what is left is the time it slept
 * (waited for its sockets: packets, ACKs, room): `--each 1` prints the three shares per round.
 */
const loopTimes = (pid) => {
  try {
    const [ran, queued] = readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ').map(Number);
    return { ran, queued };
  } catch {
    return { ran: NaN, queued: NaN };
  }
};
/** CPU seconds (user + system) a process has used so far, from /proc (clock ticks of 10 ms). */
const cpuSeconds = (pid) => cpuMicros(pid) / 1e6;
/** Runs `work` and returns its result with the CPU seconds each named process spent meanwhile. */
const perfDir = arg('perf', '');
/** `--ss DIR`: `ss -tmi` of the path's TCP sockets three times in each tunnel round, DIR/LABEL-ss.txt. */
const ssDir = arg('ss', '');
/** `--sched DIR`: `perf record -a` of the scheduler's switches and wake-ups in each tunnel round, DIR/LABEL.data. */
const schedDir = arg('sched', '');
/** `--perf-event page-faults` (or any perf event): what `--perf` samples; default cpu-clock. */
const perfEvent = arg('perf-event', 'cpu-clock');
const withCpu = (procs, work, label) => {
  const perf = !perfDir
    ? undefined
    : spawn(
        'perf',
        [
          'record',
          '-e',
          perfEvent,
          '-g',
          '-o',
          join(perfDir, `${label}.data`),
          '-p',
          Object.values(procs)
            .map((c) => c.pid)
            .join(','),
        ],
        {
          stdio: 'ignore',
        },
      );
  // `--sched DIR`: every switch and wake-up on both CPUs through the tunnel's round (bench/vnet-sched.js reads them).
  const sched = schedDir
    ? spawn('perf', ['record', '-a', '-k', 'CLOCK_MONOTONIC', '-e', 'sched:sched_switch,sched:sched_wakeup', '-o', join(schedDir, `${label}.data`)], {
        stdio: 'ignore',
      })
    : undefined;
  // `--ss DIR`: the TCP sockets' state (ss -tmi) a second, two and three into the tunnel's round: the
  // device's sockets toward the host, the edge's accepted sockets (the upgrade namespace) and the dc's.
  const upgradePid = ssDir && upgradeNsPid(procs.edge.pid);
  if (ssDir)
    spawn(
      'sh',
      [
        '-c',
        `for i in 1 2 3; do sleep 1; echo "=== $i"; echo "--- device"; ip netns exec ${names.dev} ss -tmiHn; echo "--- upgrade"; nsenter -t ${upgradePid} -n ss -tmiHn; echo "--- dc"; ip netns exec ${names.dc} ss -tmiHn; done > ${join(ssDir, `${label}-ss.txt`)} 2>&1`,
      ],
      { stdio: 'ignore' },
    );
  if (perf || sched) execFileSync('sleep', ['0.5']);
  // System calls and context switches per process (`--syscalls 1`): counts, which the machine's
  // load moves far less than CPU time (no hardware counters in this VM).
  const stats = !countSyscalls
    ? []
    : Object.entries(procs).map(([k, c]) => {
        const file = join(home, `stat-${label}-${k}.csv`);
        return {
          k,
          file,
          child: spawn(
            'perf',
            [
              'stat',
              '-x',
              ',',
              '-e',
              ['raw_syscalls:sys_enter', 'context-switches', 'page-faults', ...syscallNames.map((n) => `syscalls:sys_enter_${n}`)].join(','),
              '-o',
              file,
              '-p',
              String(c.pid),
            ],
            { stdio: 'ignore' },
          ),
        };
      });
  // `--strace DIR`: strace -c of each process per phase (slows them: read the counts, not the speed).
  const straces = !straceDir
    ? []
    : Object.entries(procs).map(([k, c]) =>
        spawn('strace', ['-c', '-f', '-o', join(straceDir, `${label}-${k}.txt`), '-p', String(c.pid)], { stdio: 'ignore' }),
      );
  if (stats.length || straces.length) execFileSync('sleep', ['0.3']);
  const linksBefore = countSyscalls ? links() : undefined;
  // With the monotonic clock's seconds (the children's output is read after the phase: OXY_QUIC_TRACE's t= places it).
  const mark = (what) => {
    const line = `=== ${label} ${what} t=${fmt(Number(process.hrtime.bigint()) / 1e9, 3)}\n`;
    Object.values(procs).forEach((c) => c.log && appendFileSync(c.log, line));
    if (traceFile) appendFileSync(traceFile, line);
  };
  mark('start');
  const before = Object.fromEntries(Object.entries(procs).map(([k, c]) => [k, cpuSeconds(c.pid)]));
  const loopsBefore = Object.fromEntries(Object.entries(procs).map(([k, c]) => [k, loopTimes(c.pid)]));
  const wallBefore = process.hrtime.bigint();
  const result = work();
  const wall = Number(process.hrtime.bigint() - wallBefore);
  if (sched) writeFileSync(join(schedDir, `${label}.json`), JSON.stringify({ start: String(wallBefore), end: String(wallBefore + BigInt(wall)) }));
  // Each main thread's share of the round: on a CPU / runnable, waiting for one / asleep.
  const loops = Object.fromEntries(
    Object.entries(procs).map(([k, c]) => {
      const now = loopTimes(c.pid);
      const ran = (now.ran - loopsBefore[k].ran) / wall;
      const queued = (now.queued - loopsBefore[k].queued) / wall;
      return [k, { ran, queued, slept: 1 - ran - queued }];
    }),
  );
  const linksAfter = countSyscalls ? links() : undefined;
  mark('end');
  perf?.kill('SIGINT');
  sched?.kill('SIGINT');
  const cpu = Object.fromEntries(Object.entries(procs).map(([k, c]) => [k, cpuSeconds(c.pid) - before[k]]));
  for (const child of straces) child.kill('SIGINT');
  for (const { child } of stats) child.kill('SIGINT');
  if (stats.length) execFileSync('sleep', ['0.3']);
  const calls = {};
  for (const { k, file } of stats) {
    const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
    // "<not counted>": the process never ran meanwhile (a device that handed its TUN over), so 0;
    // no line at all: perf did not attach in time, so NaN.
    const count = (event) => {
      const first = (text.split('\n').find((l) => l.includes(event)) ?? '').split(',')[0];
      return first === '<not counted>' ? 0 : Number(first || NaN);
    };
    calls[k] = {
      syscalls: count('raw_syscalls'),
      switches: count('context-switches'),
      faults: count('page-faults'),
      each: Object.fromEntries(syscallNames.map((n) => [n, count(`sys_enter_${n},`)])),
    };
  }
  const packets = linksBefore ? Object.fromEntries(Object.entries(linksAfter).map(([k, v]) => [k, v - (linksBefore[k] ?? 0)])) : undefined;
  return { result, cpu, calls, packets, loops };
};
/**
 * Packets each interface of the edge's and device's namespaces sent and received so far
 * (`--syscalls`): per request, the QUIC packets on the edge's veth and the IP packets on the TUNs.
 */
const links = () => {
  const out = {};
  for (const [who, ns] of [
    ['edge', names.edge],
    ['device', names.dev],
  ]) {
    for (const l of JSON.parse(sh('ip', ['-j', '-s', '-n', ns, 'link', 'show']))) {
      if (l.ifname === 'lo') continue;
      out[`${who} ${l.ifname} tx`] = l.stats64.tx.packets;
      out[`${who} ${l.ifname} rx`] = l.stats64.rx.packets;
    }
  }
  return out;
};
const perPacket = (packets, units) =>
  Object.entries(packets)
    .filter(([k]) => !k.includes('wg'))
    .map(([k, v]) => `${k} ${fmt(v / units, 2)}`)
    .join(' | ');
/**
 * The edge's labelled counters now (its /metrics, one scrape): `(name, label, value, absent)` reads one,
 * `absent` (NaN unless given) where the series is not there.
 */
const edgeCounters = () => {
  const m = inNs(names.edge, 'curl', ['-s', 'http://127.0.0.1:7845/metrics']);
  return (name, label, value, absent = NaN) => Number(new RegExp(`^${name}\\{${label}="${value}"\\} (\\d+)`, 'm').exec(m)?.[1] ?? absent);
};
/** The connector's metrics port in the dc namespace (the first of cloudflared's known ones, given). */
const CONNECTOR_METRICS = 20241;
/**
 * The connector's closing answers held for the host's FIN so far (oxyctl_private_tcp_fin_holds_total,
 * OXY_FLOW_FIN_HOLD): held, let go by the FIN, at the hold's end; µs held, summed (0 from a build before them).
 */
const finHolds = () => {
  const m = inNs(names.dc, 'curl', ['-s', `http://127.0.0.1:${CONNECTOR_METRICS}/metrics`]);
  const n = (event) => Number(new RegExp(`^oxyctl_private_tcp_fin_holds_total\\{event="${event}"\\} (\\d+)`, 'm').exec(m)?.[1] ?? 0);
  const us = Number(/^oxyctl_private_tcp_fin_hold_seconds_total (\S+)/m.exec(m)?.[1] ?? 0) * 1e6;
  return { held: n('held'), fin: n('fin'), deadline: n('deadline'), us };
};
const holdsSince = (a, b = finHolds()) => {
  const held = b.held - a.held;
  return `${held} closing answers held for the host's FIN (${b.fin - a.fin} let go by it, ${b.deadline - a.deadline} at the hold's end, ${held ? fmt((b.us - a.us) / held, 0) : 0} µs each)`;
};
/**
 * The edge's fast NAT packets so far by outcome (oxy_edge_fast_nat_packets_total): to_kernel, to_client, lost, refused;
 * and its TUN ring (oxy_edge_tun_ring_total): writes, enters, reads (handed-over TUNs), upgrade_reads.
 */
const fastNatPackets = () => {
  const n = edgeCounters();
  const nat = (outcome) => n('oxy_edge_fast_nat_packets_total', 'outcome', outcome);
  const ring = (what) => n('oxy_edge_tun_ring_total', 'what', what);
  return {
    to_kernel: nat('to_kernel'),
    to_client: nat('to_client'),
    lost: nat('lost'),
    refused: nat('refused'),
    ring_writes: ring('writes'),
    ring_enters: ring('enters'),
    ring_reads: ring('reads'),
    ring_upgrade_reads: ring('upgrade_reads'),
  };
};
/**
 * The TCP counters (`nstat -az`: absolute, so no history file is involved) of the device's namespace
 * (the receiver in -R) and of the edge's upgrade namespace (its accepted sockets toward the device,
 * entered through the namespace child's pid), for `--each 1`: segments queued out of order, drops,
 * DSACKs and retransmissions, per tunnel round.
 */
const TCP_COUNTERS = {
  device: [
    'TcpInSegs',
    'TcpOutSegs',
    'TcpInErrs',
    'TcpInCsumErrors',
    'TcpExtTCPOFOQueue',
    'TcpExtTCPBacklogDrop',
    'TcpExtTCPRcvQDrop',
    'TcpExtTCPOFODrop',
    'TcpExtTCPZeroWindowDrop',
    'TcpExtTCPDSACKOldSent',
    'TcpExtTCPDSACKOfoSent',
  ],
  upgrade: [
    'TcpInSegs',
    'TcpOutSegs',
    'TcpRetransSegs',
    'TcpExtTCPLossProbes',
    'TcpExtTCPLossProbeRecovery',
    'TcpExtTCPFastRetrans',
    'TcpExtTCPSlowStartRetrans',
    'TcpExtTCPTimeouts',
    'TcpExtTCPSpuriousRTOs',
    'TcpExtTCPRenoRecovery',
    'TcpExtTCPSackRecovery',
    'TcpExtTCPSACKReorder',
    'TcpExtTCPRenoReorder',
    'TcpExtTCPTSReorder',
    'TcpExtTCPDSACKRecv',
    'TcpExtTCPDSACKUndo',
    'TcpExtTCPLossUndo',
  ],
  // The host's namespace: the connector's sockets toward the host and the host's own (both ends
  // counted): in -R the connector's window updates are the host's pure ACKs received.
  dc: ['TcpInSegs', 'TcpOutSegs', 'TcpRetransSegs', 'TcpExtTCPPureAcks', 'TcpExtTCPHPAcks', 'TcpExtTCPRcvQDrop', 'TcpExtTCPBacklogDrop'],
};
/** The edge's namespace child (`unshare --net`: the upgrade namespace), a child process of the edge whose net namespace differs. */
const upgradeNsPid = (edgePid) => {
  const own = readlinkSync(`/proc/${edgePid}/ns/net`);
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      // /proc/PID/stat: "pid (comm) state ppid …"; comm may hold spaces, so read past its last ')'.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1] !== String(edgePid)) continue;
      if (readlinkSync(`/proc/${pid}/ns/net`) !== own) return pid;
    } catch {}
  }
  return undefined;
};
const tcpCounters = (edgePid) => {
  const read = (prefix, names) => {
    const out = sh(prefix[0], [...prefix.slice(1), 'nstat', '-az', ...names]);
    return Object.fromEntries(names.map((n) => [n, Number(new RegExp(`^${n}\\s+(\\d+)`, 'm').exec(out)?.[1] ?? NaN)]));
  };
  const pid = upgradeNsPid(edgePid);
  return {
    device: read(['ip', 'netns', 'exec', names.dev], TCP_COUNTERS.device),
    upgrade: pid ? read(['nsenter', '-t', pid, '-n'], TCP_COUNTERS.upgrade) : {},
    dc: read(['ip', 'netns', 'exec', names.dc], TCP_COUNTERS.dc),
  };
};
const tcpLine = (before, after) =>
  Object.entries(after)
    .map(
      ([who, c]) =>
        `${who} ${Object.entries(c)
          .map(([n, v]) => `${n.replace(/^TcpExt|^Tcp/, '')} ${v - before[who][n]}`)
          .join(' ')}`,
    )
    .join(' | ');
/** The device's segments received and queued out of order between two tcpCounters() (the veth's and wireguard-go's rounds). */
const deviceLine = (before, after) =>
  ['TcpInSegs', 'TcpExtTCPOFOQueue'].map((n) => `${n.replace(/^TcpExt|^Tcp/, '')} ${after.device[n] - before.device[n]}`).join(' ');
const syscallsArg = arg('syscalls', '');
const countSyscalls = syscallsArg !== '';
/** `--syscalls read,write,...`: those counted apart too. */
const syscallNames = syscallsArg === '' || syscallsArg === '1' ? [] : syscallsArg.split(',');
const straceDir = arg('strace', '');
/** `--each 1`: every tunnel round's figures, not only the medians. */
const eachRound = arg('each', '') === '1';
const perCall = (calls, units) =>
  Object.entries(calls)
    .map(
      ([k, c]) =>
        `${k} ${fmt(c.syscalls / units, 1)} / ${fmt(c.switches / units, 1)} / ${fmt(c.faults / units, 1)}` +
        (syscallNames.length ? ` (${syscallNames.map((n) => `${n} ${fmt(c.each[n] / units, 1)}`).join(', ')})` : ''),
    )
    .join(' | ');
const perUnit = (cpu, units, scale, unit, digits = 1) =>
  Object.entries(cpu)
    .map(([k, s]) => `${k} ${fmt((s * scale) / units, digits)}`)
    .join(' / ') + ` ${unit}`;
/**
 * Ours summed, and wireguard-go's two processes (device and host ends) per unit in its own rounds:
 * the same machine's load on both, read as one comparison (rates are not, CPU per unit is).
 */
const perUnitVsWg = (c, units, wgUnits, scale, unit) => {
  const ours = Object.values(c.cpu).reduce((a, b) => a + b, 0);
  return `${perUnit(c.cpu, units, scale, unit)} (all ${fmt((ours * scale) / units, 1)}${c.wgTotal > 0 ? ` | wireguard-go's two ${fmt(((c.wgCpu / 1e6) * scale) / wgUnits, 1)}` : ''} ${unit})`;
};

/** An X25519 key pair as WireGuard's UAPI wants it (hex). */
function wgKeys() {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  const hex = (b64url) => Buffer.from(b64url, 'base64url').toString('hex');
  return { priv: hex(privateKey.export({ format: 'jwk' }).d), pub: hex(publicKey.export({ format: 'jwk' }).x) };
}

/** Sends one UAPI `set` to wireguard-go's socket; resolves when it answers errno=0. */
function uapiSet(ifname, lines) {
  return new Promise((resolve, reject) => {
    const s = net.connect(`/var/run/wireguard/${ifname}.sock`);
    let out = '';
    s.on('error', reject);
    s.on('data', (d) => {
      out += d;
      if (out.endsWith('\n\n')) {
        s.end();
        if (/errno=0/.test(out)) resolve();
        else reject(new Error(`wireguard-go ${ifname}: ${out.trim()}`));
      }
    });
    s.write(`set=1\n${lines.join('\n')}\n\n`);
  });
}

/** The two wireguard-go processes (`ip netns exec` execs them: same pids), for their CPU per unit. */
const wgPids = [];

/** wireguard-go in the device and host namespaces over their veth, tunnel 198.18.99.1 ↔ .2. */
async function startWireguard() {
  const [dev, dc] = [wgKeys(), wgKeys()];
  const wgEnv = { ...env, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: '1' };
  const sides = [
    { ns: names.dev, ifname: `wgv${tag}`, keys: dev, peer: dc, addr: '198.18.99.1/24', peerIp: '198.18.99.2/32', endpoint: '198.18.9.2:51820' },
    { ns: names.dc, ifname: `wgh${tag}`, keys: dc, peer: dev, addr: '198.18.99.2/24', peerIp: '198.18.99.1/32', endpoint: '198.18.9.1:51820' },
  ];
  for (const side of sides) {
    const child = spawn('ip', ['netns', 'exec', side.ns, 'wireguard-go', '-f', side.ifname], { env: wgEnv, stdio: 'ignore' });
    children.push(child);
    wgPids.push(child.pid);
    const deadline = Date.now() + 10_000;
    while (!existsSync(`/var/run/wireguard/${side.ifname}.sock`)) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`wireguard-go ${side.ifname} did not start`);
      await new Promise((r) => setTimeout(r, 50));
    }
    await uapiSet(side.ifname, [
      `private_key=${side.keys.priv}`,
      'listen_port=51820',
      `public_key=${side.peer.pub}`,
      `endpoint=${side.endpoint}`,
      `allowed_ip=${side.peerIp}`,
    ]);
    ipn(side.ns, 'addr', 'add', side.addr, 'dev', side.ifname);
    ipn(side.ns, 'link', 'set', side.ifname, 'up');
  }
}

try {
  for (const ns of Object.values(names)) sh('ip', ['netns', 'add', ns]);
  for (const ns of Object.values(names)) ipn(ns, 'link', 'set', 'lo', 'up');
  ipn(names.edge, 'link', 'add', 'to-dc', 'type', 'veth', 'peer', 'name', 'to-edge', 'netns', names.dc);
  ipn(names.dev, 'link', 'add', 'to-dc', 'type', 'veth', 'peer', 'name', 'to-dev', 'netns', names.dc);
  ipn(names.edge, 'addr', 'add', '198.18.1.1/30', 'dev', 'to-dc');
  ipn(names.dc, 'addr', 'add', '198.18.1.2/30', 'dev', 'to-edge');
  ipn(names.dev, 'addr', 'add', '198.18.9.1/30', 'dev', 'to-dc');
  ipn(names.dc, 'addr', 'add', '198.18.9.2/30', 'dev', 'to-dev');
  for (const [ns, dev] of [
    [names.edge, 'to-dc'],
    [names.dc, 'to-edge'],
    [names.dc, 'to-dev'],
    [names.dev, 'to-dc'],
  ])
    ipn(ns, 'link', 'set', dev, 'up');
  ipn(names.dc, 'addr', 'add', '198.18.0.10/32', 'dev', 'lo');
  ipn(names.dc, 'addr', 'add', '198.18.4.10/32', 'dev', 'lo');
  // The device's client may reuse a port its own TIME_WAIT holds (as clients that open many short
  // connections are set up). Where the client closes first it keeps the TIME_WAIT: before the
  // connector read the origin's EOF in the turn of its last data (c06a157) it did for ~18–22 % of
  // the tunnel's connections (2–4 % after it, as over veth; 0–0.2 % since the connector holds a
  // closing answer for the host's FIN, 2a315f8; wireguard-go 5–10 %), and at 6,000
  // connections/s the 28,232 ports to one destination ran out by the third round: connect()
  // searched the port space (__inet_check_established) and the tunnel's rate fell to ~600/s. All
  // three paths share this setting (docs/decisions.md, session 22, lead and helper finlag).
  sh('ip', ['netns', 'exec', names.dev, 'sysctl', '-qw', 'net.ipv4.tcp_tw_reuse=1']);

  const server = await spawnIn(
    names.dc,
    process.execPath,
    ['-e', "require('http').createServer((q,s)=>s.end('ok')).listen(80,'0.0.0.0',()=>console.log('ready'))"],
    /ready/,
  );
  const iperfServer = await spawnIn(names.dc, 'iperf3', ['-s', '-B', '0.0.0.0', '--forceflush'], /Server listening/);

  oxy('vnet', 'add', 'lab');
  oxy('tunnel', 'create', 'dc');
  oxy('tunnel', 'route', 'ip', 'add', '198.18.0.0/24', 'dc');
  oxy('edge', 'init', '--ip', '198.18.1.1');
  const sock = join(home, 'ip.sock');
  const edge = await spawnIn(
    names.edge,
    process.execPath,
    [
      ...nodeFlags,
      bin,
      'edge',
      'run',
      // One process: the figures are that process's (edge run --workers defaults to one per core).
      '--workers',
      '1',
      '--tunnel-listen',
      '0.0.0.0:7844',
      '--http-listen',
      '127.0.0.1:0',
      '--metrics',
      // Its own namespace: a fixed port nothing else takes.
      '127.0.0.1:7845',
      '--ip-tunnel-listen',
      sock,
    ],
    /IP tunnel on-ramp ready/,
  );
  const connector = await spawnIn(
    names.dc,
    process.execPath,
    [
      ...nodeFlags,
      bin,
      'tunnel',
      'run',
      '--protocol',
      protocol,
      '--edge',
      '198.18.1.1:7844',
      '--metrics',
      `127.0.0.1:${CONNECTOR_METRICS}`,
      '--hello-world',
      'dc',
    ],
    /(Registered tunnel connection[^\n]*\n[\s\S]*){4}/,
  );
  const device = await spawnIn(
    names.dev,
    process.execPath,
    [...nodeFlags, bin, 'warp', 'connect', '--edge', sock, '--route', '198.18.0.0/24', '--route', '198.18.4.0/24'],
    /Connected to the edge/,
  );

  /** Gbit/s received; a server still closing the previous test answers "busy": tried again. */
  const iperf = (target, ...extra) => {
    for (let attempt = 1; ; attempt++) {
      const out = JSON.parse(inNs(names.dev, 'iperf3', ['-c', target, '-t', String(seconds), '-J', ...extra]));
      if (out.end?.sum_received) return out.end.sum_received.bits_per_second / 1e9;
      if (attempt === 3) throw new Error(`iperf3 to ${target}: ${out.error ?? 'no result'}`);
      execFileSync('sleep', ['1']);
    }
  };
  /** Failed requests per target (a reset connection): counted apart, never as requests. */
  const failures = new Map();
  const rps = (target, fresh = false, ms = seconds * 1000) => {
    const [rate, failed] = inNs(names.dev, process.execPath, ['-e', LOAD, target, String(ms), fresh ? 'fresh' : ''])
      .trim()
      .split(' ')
      .map(Number);
    failures.set(target, (failures.get(target) ?? 0) + failed);
    return rate;
  };
  const failedLine = () =>
    `requests that failed (reset or refused), all phases so far: tunnel ${failures.get('198.18.0.10') ?? 0} | veth ${failures.get('198.18.9.2') ?? 0}` +
    (hasWg ? ` | wireguard-go ${failures.get('198.18.99.2') ?? 0}` : '');
  const procs = { device, edge, connector };
  // `ip netns exec` execs the command: these are the processes' own ids, as the trace prints them.
  if (traceFile) for (const [k, c] of Object.entries(procs)) appendFileSync(traceFile, `=== process ${k} pid=${c.pid}\n`);
  if (schedDir)
    writeFileSync(
      join(schedDir, 'pids.json'),
      JSON.stringify({ device: device.pid, edge: edge.pid, connector: connector.pid, server: iperfServer.pid, http: server.pid }),
    );
  // `--wireguard 0`: its rounds left out (a bimodal phase's many single rounds are then a third shorter).
  let hasWg = arg('wireguard', '1') !== '0';
  if (hasWg)
    try {
      execFileSync('wireguard-go', ['--version'], { stdio: 'ignore' });
    } catch {
      hasWg = false;
      console.log('wireguard-go not installed (apt-get install wireguard-go): its figures are left out');
    }
  if (hasWg) await startWireguard();
  const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  /**
   * `rounds` rounds of veth, tunnel and wireguard-go back to back (the machine's load moves
   * between measurements taken minutes apart): medians of each and of the per-round ratios;
   * the tunnel's CPU summed over its rounds.
   */
  const compare = (label, measure, each) => {
    const rows = { veth: [], tunnel: [], wg: [] };
    const cpu = { device: 0, edge: 0, connector: 0 };
    const calls = Object.fromEntries(
      ['device', 'edge', 'connector'].map((k) => [k, { syscalls: 0, switches: 0, faults: 0, each: Object.fromEntries(syscallNames.map((n) => [n, 0])) }]),
    );
    const packets = {};
    // Both wireguard-go processes' CPU over their rounds (µs), against their total units.
    let wgCpu = 0;
    for (let r = 0; r < rounds; r++) {
      const vethBefore = eachRound ? tcpCounters(edge.pid) : undefined;
      const vethRound = withMachine(() => measure('198.18.9.2'));
      const vethTcp = vethBefore && deviceLine(vethBefore, tcpCounters(edge.pid));
      rows.veth.push(vethRound.result);
      const natBefore = eachRound ? fastNatPackets() : undefined;
      const tcpBefore = eachRound ? tcpCounters(edge.pid) : undefined;
      const tunnelRound = withMachine(() => withCpu(procs, () => measure('198.18.0.10'), `${label}-${r}`));
      const { result, cpu: used, calls: counted, packets: sent, loops } = tunnelRound.result;
      const nat = natBefore && Object.fromEntries(Object.entries(fastNatPackets()).map(([k, v]) => [k, v - natBefore[k]]));
      const tcp = tcpBefore && tcpLine(tcpBefore, tcpCounters(edge.pid));
      for (const [k, v] of Object.entries(sent ?? {})) packets[k] = (packets[k] ?? 0) + v;
      rows.tunnel.push(result);
      if (eachRound && each) {
        const units = each.units(result);
        const sum = Object.values(used).reduce((a, b) => a + b, 0);
        console.log(
          `  ${label} round ${r + 1}: tunnel ${fmt(result, each.digits)}${each.rate} | veth ${fmt(rows.veth[r], each.digits)}${each.rate} | ratio ${fmt(result / rows.veth[r], 3)} | ` +
            `CPU per ${each.per} ${perUnit(used, units, each.scale, each.unit, 2)} (all ${fmt((sum * each.scale) / units, 2)})` +
            (countSyscalls ? ` | system calls / context switches / page faults ${perCall(counted, units)} | packets ${perPacket(sent, units)}` : '') +
            ` | fast NAT packets to the device ${nat.to_client}, refused (sent by JS) ${nat.refused}, lost ${nat.lost}` +
            ` | edge's TUN ring per ${each.per}: writes ${fmt(nat.ring_writes / units, 1)}, enters ${fmt(nat.ring_enters / units, 1)}, ` +
            `device TUN reads ${fmt(nat.ring_reads / units, 1)}, upgrade TUN reads ${fmt(nat.ring_upgrade_reads / units, 1)}` +
            ` | TCP: ${tcp}` +
            ` | main threads ran / waited for a CPU / slept ${Object.entries(loops)
              .map(([k, l]) => `${k} ${fmt(l.ran * 100, 0)} / ${fmt(l.queued * 100, 0)} / ${fmt(l.slept * 100, 0)} %`)
              .join(' | ')}` +
            ` | machine CPU per ${each.per}: tunnel ${fmt((tunnelRound.busy * each.scale) / units, 2)} / veth ${fmt((vethRound.busy * each.scale) / each.units(rows.veth[r]), 2)} ${each.unit}` +
            ` (idle ${fmt(tunnelRound.idle * 100, 0)} / ${fmt(vethRound.idle * 100, 0)} %)`,
        );
      }
      for (const k of Object.keys(cpu)) cpu[k] += used[k];
      for (const [k, c] of Object.entries(counted)) {
        calls[k].syscalls += c.syscalls;
        calls[k].switches += c.switches;
        calls[k].faults += c.faults;
        for (const n of syscallNames) calls[k].each[n] += c.each[n];
      }
      if (hasWg) {
        const before = cpuMicros(wgPids);
        const wgBefore = eachRound ? tcpCounters(edge.pid) : undefined;
        rows.wg.push(measure('198.18.99.2'));
        wgCpu += cpuMicros(wgPids) - before;
        if (wgBefore)
          console.log(
            `  ${label} round ${r + 1}, the device's TCP in the other rounds: veth ${vethTcp} | wireguard-go ${deviceLine(wgBefore, tcpCounters(edge.pid))}`,
          );
      }
    }
    const ratio = (other) => median(rows.tunnel.map((t, i) => t / other[i]));
    return {
      tunnel: median(rows.tunnel),
      veth: median(rows.veth),
      wg: hasWg ? median(rows.wg) : NaN,
      toVeth: ratio(rows.veth),
      toWg: hasWg ? ratio(rows.wg) : NaN,
      total: rows.tunnel.reduce((a, b) => a + b, 0),
      wgTotal: rows.wg.reduce((a, b) => a + b, 0),
      wgCpu,
      cpu,
      calls,
      packets,
    };
  };
  const line = (what, c, digits, unit) =>
    `${what}: tunnel ${fmt(c.tunnel, digits)}${unit} | veth ${fmt(c.veth, digits)}${unit} | ratio ${fmt(c.toVeth, 3)}` +
    (hasWg ? ` | wireguard-go ${fmt(c.wg, digits)}${unit}, oxyctl / wireguard-go ${fmt(c.toWg, 2)}` : '');
  console.log(`# device → edge → tunnel (${protocol}) → host, vs device → host over veth and over wireguard-go; medians of ${rounds} interleaved rounds`);
  if (phases.has('bulk')) {
    const perMB = { units: (gbits) => (gbits * 1e9 * seconds) / 8 / 1e6, digits: 2, rate: ' Gbit/s', per: 'MB', scale: 1e3, unit: 'ms' };
    // `--directions up|down`: one direction only (device → host, or -R); both by default.
    const directions = arg('directions', 'up,down').split(',');
    const up = directions.includes('up') && compare('bulk', (t) => iperf(t), perMB);
    if (up) console.log(line('iperf3 (device → host)', up, 2, ' Gbit/s'));
    // The other direction (host → device, -R): the edge sends 64 KB packets to the device.
    const down = directions.includes('down') && compare('bulk-r', (t) => iperf(t, '-R'), perMB);
    if (down) console.log(line('iperf3 -R (host → device)', down, 2, ' Gbit/s'));
    if (up) console.log(`CPU per MB through the tunnel (iperf3, device → host): ${perUnitVsWg(up, perMB.units(up.total), perMB.units(up.wgTotal), 1e3, 'ms')}`);
    if (up && countSyscalls)
      console.log(`system calls / context switches / page faults per MB (iperf3, device → host): ${perCall(up.calls, perMB.units(up.total))}`);
    if (down) console.log(`CPU per MB through the tunnel (iperf3 -R): ${perUnitVsWg(down, perMB.units(down.total), perMB.units(down.wgTotal), 1e3, 'ms')}`);
    if (down && countSyscalls) console.log(`system calls / context switches / page faults per MB (iperf3 -R): ${perCall(down.calls, perMB.units(down.total))}`);
  }
  if (phases.has('requests')) {
    const req = compare('requests', (t) => rps(t), { units: (rate) => rate * seconds, digits: 0, rate: '/s', per: 'request', scale: 1e6, unit: 'µs' });
    console.log(line('HTTP requests/s (16 keep-alive connections)', req, 0, ''));
    console.log(`CPU per request through the tunnel: ${perUnitVsWg(req, req.total * seconds, req.wgTotal * seconds, 1e6, 'µs')}`);
    if (countSyscalls) {
      console.log(`system calls / context switches / page faults per request: ${perCall(req.calls, req.total * seconds)}`);
      console.log(`packets per request (edge's veth: QUIC; TUNs: IP): ${perPacket(req.packets, req.total * seconds)}`);
    }
  }
  if (phases.has('flows')) {
    // A new TCP connection per request: a new flow each (SYN, NAT slot, upgrade, tunnel stream, dial).
    rps('198.18.0.10', true, 2000); // warm-up: the flow-setup code paths are compiled before they are measured
    const counter = (name) => Number(new RegExp(`${name}\\s+(\\d+)`).exec(inNs(names.dev, 'nstat', ['-az', name]))?.[1] ?? 0);
    const synRetrans = () => counter('TcpExtTCPSynRetrans');
    const segsBefore = counter('TcpRetransSegs');
    const retransBefore = synRetrans();
    const holdsBefore = finHolds();
    const flows = compare('flows', (t) => rps(t, true), {
      units: (rate) => rate * seconds,
      digits: 0,
      rate: '/s',
      per: 'new connection',
      scale: 1e6,
      unit: 'µs',
    });
    console.log(line('HTTP requests/s, a new connection each (16 clients)', flows, 0, ''));
    console.log(
      `SYNs / segments the device retransmitted meanwhile (all three paths): ${synRetrans() - retransBefore} / ${counter('TcpRetransSegs') - segsBefore}`,
    );
    console.log(`the tunnel's connections: ${holdsSince(holdsBefore)}`);
    console.log(`CPU per new connection through the tunnel: ${perUnitVsWg(flows, flows.total * seconds, flows.wgTotal * seconds, 1e6, 'µs')}`);
    if (countSyscalls) {
      console.log(`system calls / context switches / page faults per new connection: ${perCall(flows.calls, flows.total * seconds)}`);
      console.log(`packets per new connection (edge's veth: QUIC; TUNs: IP): ${perPacket(flows.packets, flows.total * seconds)}`);
    }
    const first = (target) => Number(inNs(names.dev, process.execPath, ['-e', FIRST, target]).trim());
    // The tunnel's QUIC packets each way per connection meanwhile (the edge's veth): each one a
    // wake-up of the process it reaches, on a path that is idle between connections.
    const early = () => {
      const n = edgeCounters();
      return { accept: n('oxy_edge_early_reads_total', 'when', 'accept'), wake: n('oxy_edge_early_reads_total', 'when', 'wake') };
    };
    const quicBefore = links();
    const earlyBefore = early();
    const holdsFirst = finHolds();
    const tunnelFirst = first('198.18.0.10');
    const quicAfter = links();
    const earlyAfter = early();
    const holdsOne = holdsSince(holdsFirst);
    const quic = (k) => fmt((quicAfter[`edge to-dc ${k}`] - quicBefore[`edge to-dc ${k}`]) / 60, 2);
    console.log(
      `one new connection at a time, connect → answer (median of 60): tunnel ${fmt(tunnelFirst, 2)} ms | veth ${fmt(first('198.18.9.2'), 2)} ms` +
        (hasWg ? ` | wireguard-go ${fmt(first('198.18.99.2'), 2)} ms` : '') +
        ` | the tunnel's QUIC packets per connection, edge → connector / back: ${quic('tx')} / ${quic('rx')}` +
        `, first chunks read at the accept / a turn later: ${earlyAfter.accept - earlyBefore.accept} / ${earlyAfter.wake - earlyBefore.wake}` +
        `, ${holdsOne}`,
    );
    if (timelineDir) {
      const pids = { device: device.pid, edge: edge.pid, connector: connector.pid, server: server.pid, wg: wgPids };
      for (const [name, target] of [['tunnel', '198.18.0.10'], ...(hasWg ? [['wireguard-go', '198.18.99.2']] : []), ['veth', '198.18.9.2']])
        await timeline(name, target, pids);
      console.log(`timelines of one connection at a time in ${timelineDir}: node bench/vnet-timeline.js ${timelineDir}`);
    }
  }
  console.log(failedLine());

  const probe = `require('net').connect(80,'198.18.4.10').on('connect',()=>process.exit(0)).on('error',()=>process.exit(1)); setTimeout(()=>process.exit(2),2000)`;
  oxy('tunnel', 'route', 'ip', 'add', '198.18.4.0/24', 'dc');
  const t0 = performance.now();
  let tries = 0;
  for (;;) {
    tries++;
    try {
      inNs(names.dev, process.execPath, ['-e', probe]);
      break;
    } catch {
      if (performance.now() - t0 > 10_000) throw new Error('route never took effect');
    }
  }
  // Private TCP flows on reused tcp-flows streams (OXY_TCP_FLOWS; none with a stream per flow).
  const n = edgeCounters();
  const flows = (stream) => n('oxy_edge_tcp_flows_total', 'stream', stream, 0);
  console.log(`tunnel flows on tcp-flows streams: ${flows('reused')} on a reused stream, ${flows('new')} on a new one`);
  console.log(`route ip add → first routed connection: ${fmt(performance.now() - t0, 0)} ms (${tries} attempts; the edge polls the store every 250 ms)`);
} finally {
  for (const c of children) c.kill('SIGKILL');
  for (const ns of Object.values(names)) {
    try {
      sh('ip', ['netns', 'delete', ns]);
    } catch {}
  }
  rmSync(home, { recursive: true, force: true });
  for (const side of ['wgv', 'wgh']) rmSync(`/var/run/wireguard/${side}${tag}.sock`, { force: true });
}
