#!/usr/bin/env node
/**
 * oxyctl against its peers, every figure a ratio to a baseline measured in the same run on
 * loopback (issue 16). The bench starts everything itself, each in a process of its own:
 *  - an origin (bench/lib/servers.js http: GET /small answers 64 bytes, GET /bytes/N, POST /sink);
 *  - OpenSSH's reverse tunnel (`ssh -R`, the classic "expose localhost"), against a private
 *    sshd on a free port with throwaway keys;
 *  - the quick tunnel (`oxyctl tunnel --url`) over HTTP/2 and over QUIC (each QUIC row names the
 *    libraries of edge / connector: ngtcp2 unless OXY_QUIC_SERVER_IMPL / OXY_QUIC_IMPL=quiche);
 *  - edge and connector as separate processes (`edge run` + `tunnel run`), per protocol, for
 *    bulk as ssh -R runs it (two processes, two cores) and for the CPU each spends per small request (utime + stime from /proc/PID/stat, the counter
 *    process.cpuUsage() reads) — the origin's own CPU per request is printed beside them as
 *    the reference for what a Node HTTP server costs on this machine at this moment;
 *  - squid and oxyctl's CONNECT proxy (`edge run --proxy-listen`, no hooks): --rounds alternating
 *    downloads each, medians of MB/s and of the proxy process's CPU per MB.
 * Small requests: wrk, 32 keep-alive connections, 2 threads. Bulk: curl, one stream of
 * --mib MiB down (GET) and up (chunked POST), with the CPU per MB of every process of the path
 * but the origin and curl (ssh -R: sshd + ssh). Printed, not asserted.
 *
 *   npm run build && node bench/peers.js [--seconds 5] [--mib 1024] [--rounds 3] [--skip ssh,squid,quic,separate,separate-bulk,per-request]
 *
 * Needs Debian's wrk, curl, openssh-server/-client and squid (scripts/setup.sh installs them).
 * A missing peer prints a line saying so and its column is left out. wireguard-go is the IP
 * path's peer and lives in bench/vnet-path.js's domain (namespaces, root), not here.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { quicClientImpl, quicServerImpl } from '../dist/engine/transport/quic/index.js';
import { arg, cpuMicros, EDGE_RUN_LOOPBACK, fmt, freePort, spawnUntil, startSshReverse, tunnelPortIn, waitListening } from './lib/run.js';

const run = promisify(execFile);
const seconds = Number(arg('seconds', 5));
const mib = Number(arg('mib', 1024));
const skip = new Set(String(arg('skip', '')).split(',').filter(Boolean));
const rounds = Number(arg('rounds', 3));
const bin = fileURLToPath(new URL('../bin/run.js', import.meta.url));
const servers = fileURLToPath(new URL('./lib/servers.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'oxy-peers-'));
chmodSync(dir, 0o755);
const children = [];
const HOST = 'bench.example.com';
const MiB = 1024 * 1024;
// The QUIC rows' libraries, edge / connector: the children inherit this process's environment.
const QUIC = `QUIC (${quicServerImpl()} / ${quicClientImpl()})`;

const have = (cmd, args = ['-h']) => {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
    return true;
  } catch (err) {
    return err.code !== 'ENOENT';
  }
};

const spawnTracked = async (cmd, args, re, options = {}) => {
  const p = await spawnUntil(cmd, args, re, options);
  children.push(p.child);
  return p;
};

/**
 * Time a process's threads spent runnable but waiting for a core, in µs (/proc/PID/task/N/schedstat
 * field 2): on a machine shared with other work this, not our CPU, is what idles the tunnel.
 */
const waitMicros = (pids) => {
  let ns = 0;
  for (const pid of [pids].flat()) {
    for (const task of readdirSync(`/proc/${pid}/task`)) ns += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[1]);
  }
  return ns / 1000;
};

/** wrk's requests/s for GET /small; with `pids`, also each process's CPU and run-queue wait µs per request. */
async function wrk(base, host, pids = {}) {
  const args = ['-t2', '-c32', `-d${seconds}s`, ...(host ? ['-H', `Host: ${host}`] : []), `${base}/small`];
  await run('wrk', ['-t2', '-c32', '-d1s', ...args.slice(3)]); // warm-up: JIT, pools, windows
  const before = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuMicros(pid)]));
  const waitBefore = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, waitMicros(pid)]));
  const { stdout } = await run('wrk', args);
  const requests = Number(/(\d+) requests in/.exec(stdout)[1]);
  const errors = /Non-2xx or 3xx responses: (\d+)/.exec(stdout);
  if (errors) throw new Error(`wrk through ${base}: ${errors[1]} error responses`);
  const cpu = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, (cpuMicros(pid) - before[k]) / requests]));
  const wait = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, (waitMicros(pid) - waitBefore[k]) / requests]));
  return { rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)[1]), cpu, wait };
}

/** MB/s (10^6 bytes) of one curl download or upload of --mib MiB. */
async function curl(url, op, host, proxy) {
  const common = [
    '-s',
    '-o',
    '/dev/null',
    '-w',
    op === 'get' ? '%{speed_download}' : '%{speed_upload}',
    ...(host ? ['-H', `Host: ${host}`] : []),
    ...(proxy ? ['-p', '-x', proxy] : []),
  ];
  if (op === 'get') {
    const { stdout } = await run('curl', [...common, `${url}/bytes/${mib * MiB}`], { maxBuffer: 1 << 20 });
    return Number(stdout) / 1e6;
  }
  // Upload: a chunked POST fed from /dev/zero through a pipe.
  const t0 = performance.now();
  await new Promise((resolve, reject) => {
    const c = spawn(
      'sh',
      [
        '-c',
        `head -c ${mib * MiB} /dev/zero | curl ${common.slice(0, 3).join(' ')} ${host ? `-H 'Host: ${host}'` : ''} ${proxy ? `-p -x ${proxy}` : ''} -T - ${url}/sink`,
      ],
      { stdio: 'ignore' },
    );
    c.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`upload to ${url} failed (curl exit ${code})`))));
  });
  return (mib * MiB) / 1e6 / ((performance.now() - t0) / 1000);
}

async function startSquid() {
  const squidDir = join(dir, 'squid');
  execFileSync('mkdir', ['-p', squidDir]);
  chmodSync(squidDir, 0o777);
  const port = await freePort();
  writeFileSync(
    join(squidDir, 'squid.conf'),
    [
      `http_port 127.0.0.1:${port}`,
      'http_access allow all',
      'cache deny all',
      'access_log none',
      `cache_log ${join(squidDir, 'cache.log')}`,
      'pid_filename none',
      `coredump_dir ${squidDir}`,
      'shutdown_lifetime 0 seconds',
      '',
    ].join('\n'),
  );
  const child = spawn('squid', ['-N', '-f', join(squidDir, 'squid.conf')], { stdio: 'ignore' });
  children.push(child);
  await waitListening(port);
  return { url: `http://127.0.0.1:${port}`, pid: child.pid };
}

const oxyEnv = (home) => ({ ...process.env, OXY_HOME: home, NO_COLOR: '1' });

async function startQuick(originUrl, protocol) {
  const home = join(dir, `quick-${protocol}`);
  const { match, child } = await spawnTracked(
    process.execPath,
    [bin, 'tunnel', '--url', originUrl, '--protocol', protocol, '--loglevel', 'warn'],
    /^(http:\/\/\S+)$/m,
    { env: oxyEnv(home) },
  );
  return { url: match[1], pid: child.pid };
}

/** Edge and connector as two processes: the edge also runs the CONNECT proxy. */
async function startSeparate(originUrl, protocol, extraEnv = {}) {
  const home = join(dir, `separate-${protocol}${extraEnv.OXY_HTTP1_STREAMS === '0' ? '-per-request' : ''}`);
  const env = { ...oxyEnv(home), ...extraEnv };
  for (const args of [
    ['edge', 'init'],
    ['tunnel', 'create', 'bench'],
    ['tunnel', 'route', 'dns', 'bench', HOST],
  ])
    execFileSync(process.execPath, [bin, ...args], { env, stdio: 'ignore' });
  const edge = await spawnTracked(
    process.execPath,
    [bin, ...EDGE_RUN_LOOPBACK, '--proxy-listen', '127.0.0.1:0', '--proxy-allow', '127.0.0.1/32', ...(protocol === 'quic' ? ['--quic'] : [])],
    /CONNECT proxy listener ready address=127\.0\.0\.1:(\d+)/,
    { env },
  );
  const out = edge.output();
  const tunnelPort = tunnelPortIn(out, protocol);
  const httpPort = /Public HTTP listener ready address=127\.0\.0\.1:(\d+)/.exec(out)[1];
  const proxyPort = edge.match[1];
  const connector = await spawnTracked(
    process.execPath,
    [bin, 'tunnel', 'run', '--edge', `127.0.0.1:${tunnelPort}`, '--protocol', protocol, '--url', originUrl, 'bench'],
    /(Registered tunnel connection[^\n]*\n[\s\S]*){4}/,
    { env },
  );
  return { url: `http://127.0.0.1:${httpPort}`, proxy: `http://127.0.0.1:${proxyPort}`, edgePid: edge.child.pid, connectorPid: connector.child.pid };
}

const ratio = (x, base) => (base ? fmt(x / base, 2) : '-');

try {
  for (const tool of ['wrk', 'curl']) if (!have(tool, ['--version'])) throw new Error(`${tool} is not installed (bash scripts/setup.sh installs it)`);
  console.log(
    `# oxyctl vs peers, loopback, ${seconds} s of wrk (32 conns, 64-byte bodies), ${mib} MiB per bulk transfer; machine load ${fmt(loadavg()[0])} on ${(await import('node:os')).cpus().length} cores`,
  );
  const origin = await spawnTracked(process.execPath, [servers, 'http'], /ready (\d+)/);
  const originUrl = `http://127.0.0.1:${origin.match[1]}`;
  const rows = [];
  const measure = async (name, url, host, pids = {}, bulk = true) => {
    const small = await wrk(url, host, { ...pids, origin: origin.child.pid });
    // CPU per MB of bulk: every process of the path but the origin and curl (both sides of a tunnel).
    const tunnelPids = Object.values(pids).flat();
    const perMB = async (op) => {
      const c0 = cpuMicros(tunnelPids);
      const mbps = await curl(url, op, host);
      return [mbps, tunnelPids.length ? (cpuMicros(tunnelPids) - c0) / 1000 / ((mib * MiB) / 1e6) : undefined];
    };
    const [down, downCpu] = bulk ? await perMB('get') : [];
    const [up, upCpu] = bulk ? await perMB('put') : [];
    rows.push({ name, ...small, down, up, downCpu, upCpu });
    console.log(`  measured ${name}`);
  };
  await measure('direct to the origin', originUrl);
  if (skip.has('ssh')) console.log('  ssh -R skipped');
  else if (!have('/usr/sbin/sshd', ['-V'])) console.log('  sshd not installed: ssh -R left out');
  else {
    const ssh = await startSshReverse(dir, Number(origin.match[1]), children);
    await measure('ssh -R (OpenSSH; CPU: sshd / ssh)', ssh.url, undefined, ssh.pids);
  }
  for (const protocol of skip.has('quic') ? ['http2'] : ['http2', 'quic']) {
    const quick = await startQuick(originUrl, protocol);
    await measure(`quick tunnel, ${protocol === 'quic' ? QUIC : 'HTTP/2'}`, quick.url, undefined, { tunnel: quick.pid });
  }
  const proxies = [];
  if (!skip.has('separate') && !skip.has('per-request')) {
    // The same, with the edge's one-stream-per-client-connection path off: what it saves, in this run.
    const s = await startSeparate(originUrl, 'http2', { OXY_HTTP1_STREAMS: '0' });
    await measure('edge + connector, HTTP/2, a stream per request (OXY_HTTP1_STREAMS=0)', s.url, HOST, { edge: s.edgePid, connector: s.connectorPid }, false);
  }
  if (!skip.has('separate')) {
    for (const protocol of skip.has('quic') ? ['http2'] : ['http2', 'quic']) {
      const s = await startSeparate(originUrl, protocol);
      await measure(
        `edge + connector processes, ${protocol === 'quic' ? QUIC : 'HTTP/2'}`,
        s.url,
        HOST,
        { edge: s.edgePid, connector: s.connectorPid },
        !skip.has('separate-bulk'),
      );
      if (protocol === 'http2') proxies.push(['oxyctl CONNECT proxy (no hooks)', s.proxy, s.edgePid]);
    }
  }
  if (skip.has('squid')) console.log('  squid skipped');
  else if (!have('squid', ['-v'])) console.log('  squid not installed: its row is left out');
  else {
    const squid = await startSquid();
    proxies.unshift(['squid CONNECT', squid.url, squid.pid]);
  }

  const direct = rows[0];
  const ssh = rows.find((r) => r.name.startsWith('ssh'));
  console.log(
    '\n| path | small req/s | × direct | × ssh -R | download MB/s | × ssh -R | upload MB/s | × ssh -R | bulk CPU ms/MB down / up (both sides) | CPU µs/request (edge / connector / origin) | tunnel CPU ÷ origin CPU | waiting for a core, µs/request (edge / connector) |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    const cpu =
      r.cpu.edge !== undefined
        ? `${fmt(r.cpu.edge, 0)} / ${fmt(r.cpu.connector, 0)} / ${fmt(r.cpu.origin, 0)}`
        : r.cpu.tunnel !== undefined
          ? `${fmt(r.cpu.tunnel, 0)} (both, one process) / ${fmt(r.cpu.origin, 0)}`
          : `origin ${fmt(r.cpu.origin, 0)}`;
    const bulk =
      r.down !== undefined
        ? [
            fmt(r.down, 0),
            ratio(r.down, ssh?.down),
            fmt(r.up, 0),
            ratio(r.up, ssh?.up),
            r.downCpu !== undefined ? `${fmt(r.downCpu, 2)} / ${fmt(r.upCpu, 2)}` : '-',
          ]
        : ['-', '-', '-', '-', '-'];
    const wait =
      r.wait.edge !== undefined
        ? `${fmt(r.wait.edge, 0)} / ${fmt(r.wait.connector, 0)}`
        : r.wait.tunnel !== undefined
          ? `${fmt(r.wait.tunnel, 0)} (one process)`
          : '-';
    // CPU per request against the origin's own (a Node HTTP server): the figure that moves least with the machine's load.
    const tunnelCpu = r.cpu.edge !== undefined ? r.cpu.edge + r.cpu.connector : r.cpu.tunnel;
    const relative = tunnelCpu !== undefined ? fmt(tunnelCpu / r.cpu.origin, 1) : '-';
    console.log(
      `| ${r.name} | ${fmt(r.rps, 0)} | ${ratio(r.rps, direct.rps)} | ${ratio(r.rps, ssh?.rps)} | ${bulk.join(' | ')} | ${cpu} | ${relative} | ${wait} |`,
    );
  }
  if (proxies.length) {
    // Alternating rounds, medians: one download swings 2× on a shared machine. CPU per MB is the proxy process's own.
    const results = new Map();
    for (const [name, proxy] of proxies) {
      try {
        await curl(originUrl, 'get', undefined, proxy); // warm-up
        results.set(name, { mbps: [], cpu: [] });
      } catch (err) {
        console.log(`  ${name}: ${err.message.split('\n')[0]}`);
      }
    }
    for (let round = 0; round < rounds; round++) {
      for (const [name, proxy, pid] of proxies) {
        const r = results.get(name);
        if (!r) continue;
        const c0 = cpuMicros(pid);
        r.mbps.push(await curl(originUrl, 'get', undefined, proxy));
        r.cpu.push((cpuMicros(pid) - c0) / 1000 / ((mib * MiB) / 1e6));
      }
    }
    const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const squid = results.get('squid CONNECT');
    console.log(`\n| CONNECT proxy, one ${mib} MiB download (median of ${rounds}) | MB/s | × squid | proxy CPU ms/MB | × squid |\n|---|---|---|---|---|`);
    for (const [name, r] of results)
      console.log(
        `| ${name} | ${fmt(median(r.mbps), 0)} | ${ratio(median(r.mbps), squid && median(squid.mbps))} | ${fmt(median(r.cpu), 2)} | ${ratio(median(r.cpu), squid && median(squid.cpu))} |`,
      );
  }
  // Issue 16's aims for QUIC: small requests/s ≥ ssh -R, and ≥ HTTP/2 for small requests and bulk.
  for (const kind of ['quick tunnel', 'edge + connector processes']) {
    const h2 = rows.find((r) => r.name === `${kind}, HTTP/2`);
    const quic = rows.find((r) => r.name === `${kind}, ${QUIC}`);
    if (!quic) continue;
    const vsH2 = h2 ? `; ÷ HTTP/2: small requests ${ratio(quic.rps, h2.rps)}, download ${ratio(quic.down, h2.down)}, upload ${ratio(quic.up, h2.up)}` : '';
    console.log(`\n${QUIC}, ${kind}: small requests ÷ ssh -R ${ratio(quic.rps, ssh?.rps)}${vsH2}`);
  }
  console.log(`(machine load at the end: ${fmt(loadavg()[0])}; other work shares these cores, so read the ratios, not the absolute figures)`);
} finally {
  for (const c of children) c.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 300));
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
}
