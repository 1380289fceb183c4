import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';

/** Spawns a process and resolves with it once its output matches `re`. */
export function spawnUntil(cmd, args, re, options = {}) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timeout waiting for ${re}:\n${out}`)), 30_000);
    const on = (d) => {
      out += d;
      const m = out.match(re);
      if (m) {
        clearTimeout(timer);
        resolve({ child, match: m, output: () => out });
      }
    };
    child.stdout.on('data', on);
    child.stderr.on('data', on);
    child.on('exit', (code) => reject(new Error(`${cmd} exited ${code}:\n${out}`)));
  });
}

// `--help` prints the bench's own header comment (its options) instead of running it: an unknown
// option is otherwise ignored, and a full run on a shared machine spoils any run beside it.
if (process.argv.includes('--help') || process.argv.includes('-h')) {
  const text = readFileSync(process.argv[1], 'utf8');
  const doc = /\/\*\*([\s\S]*?)\*\//.exec(text);
  console.log(doc ? doc[1].replace(/^ ?\* ?/gm, '').trim() : `${process.argv[1]}: no header comment`);
  process.exit(0);
}

export const rssMiB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;
export const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
export const fmt = (x, d = 1) => x.toFixed(d);

/** A process and its descendants (a primary's workers, sshd's process per connection). */
export const family = (pid) => {
  const out = [pid];
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    const kids = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
    if (kids) for (const kid of kids.split(' ')) out.push(...family(Number(kid)));
  }
  return out;
};

/**
 * utime + stime of a process or processes so far, in µs (what process.cpuUsage() counts), read
 * from outside: /proc/PID/stat, in clock ticks of 10 ms.
 */
export const cpuMicros = (pids) => {
  let ticks = 0;
  for (const pid of [pids].flat()) {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks * 10_000;
};

/** The highest of `times` results of `fn` (a transfer's best run on a busy machine). */
export const best = async (times, fn) => {
  let top = 0;
  for (let i = 0; i < times; i++) top = Math.max(top, await fn());
  return top;
};

/** `edge run` as one process on loopback ports the kernel picks (--workers defaults to one per core). */
export const EDGE_RUN_LOOPBACK = [
  'edge',
  'run',
  '--workers',
  '1',
  '--tunnel-listen',
  '127.0.0.1:0',
  '--http-listen',
  '127.0.0.1:0',
  '--metrics',
  '127.0.0.1:0',
];

/** The tunnel port an edge's output names for `protocol`. */
export const tunnelPortIn = (output, protocol = 'http2') =>
  new RegExp(`Tunnel listener ready protocol=${protocol} address=127\\.0\\.0\\.1:(\\d+)`).exec(output)[1];

/** bin/run.js (the built CLI) and the benchmarks' server processes (./servers.js). */
export const OXY_BIN = fileURLToPath(new URL('../../bin/run.js', import.meta.url));
export const SERVERS = fileURLToPath(new URL('./servers.js', import.meta.url));

/**
 * A data directory of its own (the caller removes `home`) and the CLI over it: `oxy` runs a
 * command, `spawnOxy` starts one until its output matches `re`, tracked in `children`.
 */
export function oxyBench() {
  const home = mkdtempSync(join(tmpdir(), 'oxy-bench-'));
  const env = { ...process.env, OXY_HOME: home, NO_COLOR: '1' };
  const children = [];
  const oxy = (...args) => execFileSync(process.execPath, [OXY_BIN, ...args], { env });
  const spawnOxy = async (args, re) => {
    const p = await spawnUntil(process.execPath, [OXY_BIN, ...args], re, { env });
    children.push(p.child);
    return p;
  };
  return { home, children, oxy, spawnOxy };
}

/**
 * The builds and environments to compare: each `--config NAME[@DIR][:ENV=V,...]` on the command
 * line (DIR: another checkout's root), or this build alone.
 */
export function benchConfigs() {
  const configs = process.argv
    .flatMap((a, i) => (a === '--config' ? [process.argv[i + 1]] : []))
    .map((spec) => {
      const [head, envText = ''] = spec.split(/:(.*)/s);
      const [name, root] = head.split('@');
      const env = Object.fromEntries(
        envText
          .split(',')
          .filter(Boolean)
          .map((kv) => kv.split(/=(.*)/s).slice(0, 2)),
      );
      return { name, bin: root ? join(resolve(root), 'bin/run.js') : OXY_BIN, env };
    });
  return configs.length ? configs : [{ name: 'this build', bin: OXY_BIN, env: {} }];
}

/** An edge identity and a tunnel `bench` routed for `host`, made with `bin` in `env`'s OXY_HOME. */
export function initBenchTunnel(bin, env, host) {
  for (const args of [
    ['edge', 'init'],
    ['tunnel', 'create', 'bench'],
    ['tunnel', 'route', 'dns', 'bench', host],
  ])
    execFileSync(process.execPath, [bin, ...args], { env: { ...env, NODE_OPTIONS: '' }, stdio: 'ignore' });
}

/**
 * One config's edge + connector processes on `originUrl` (h1-bulk.js, h1-small.js): the tunnel
 * made with initBenchTunnel in `home`, the connector dialing over `protocol` (OXY_BENCH_PROTOCOL in
 * the config's env wins) once its connections registered (4, or OXY_BENCH_HA in the config's env).
 * `nodeOptions` are added to both processes' NODE_OPTIONS; `children` collects them.
 */
export async function startBenchPair(c, { home, originUrl, protocol = 'http2', nodeOptions = [], children, host = 'bench.example.com' }) {
  const env = { ...process.env, OXY_HOME: home, NO_COLOR: '1', ...c.env };
  if (nodeOptions.length) env.NODE_OPTIONS = [env.NODE_OPTIONS ?? '', ...nodeOptions].join(' ');
  initBenchTunnel(c.bin, env, host);
  const edge = await spawnUntil(process.execPath, [c.bin, ...EDGE_RUN_LOOPBACK], /Public HTTP listener ready address=127\.0\.0\.1:(\d+)/, { env });
  children.push(edge.child);
  const tunnel = `127.0.0.1:${tunnelPortIn(edge.output())}`;
  const ha = Number(c.env.OXY_BENCH_HA ?? 4);
  const connector = await spawnUntil(
    process.execPath,
    [c.bin, 'tunnel', 'run', '--edge', tunnel, '--protocol', c.env.OXY_BENCH_PROTOCOL ?? protocol, '--ha-connections', String(ha), '--url', originUrl, 'bench'],
    new RegExp(`(Registered tunnel connection[^\\n]*\\n[\\s\\S]*){${ha}}`),
    { env },
  );
  children.push(connector.child);
  return {
    url: `http://127.0.0.1:${edge.match[1]}`,
    pids: { edge: edge.child.pid, connector: connector.child.pid },
    output: edge.output,
    connectorOutput: connector.output,
  };
}

/** MiB/s of one GET /bytes/N or POST /sink of `n` bytes to servers.js's HTTP server (through `origin`, as `host`). */
export async function httpTransfer(origin, host, op, n, dispatcher) {
  const t0 = performance.now();
  if (op === 'get') {
    const res = await request(`${origin}/bytes/${n}`, { headers: { host }, dispatcher });
    let got = 0;
    for await (const chunk of res.body) got += chunk.length;
    if (got !== n) throw new Error(`got ${got} of ${n}`);
  } else {
    const chunk = Buffer.alloc(256 * 1024, 3);
    let sent = 0;
    const body = new Readable({
      read() {
        if (sent >= n) this.push(null);
        else {
          sent += chunk.length;
          this.push(chunk);
        }
      },
    });
    const res = await request(`${origin}/sink`, { method: 'POST', body, headers: { host, 'content-length': String(n) }, dispatcher });
    if (Number(await res.body.text()) !== n) throw new Error('short upload');
  }
  return n / (1024 * 1024) / ((performance.now() - t0) / 1000);
}

/** A TCP port free on 127.0.0.1 just now. */
export async function freePort() {
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

/** Resolves once something accepts on 127.0.0.1:`port`. */
export async function waitListening(port, ms = 20_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(s.destroy() || true));
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * OpenSSH's reverse tunnel (`ssh -R`) to 127.0.0.1:`originPort`, against a private sshd on a free
 * port with throwaway keys in `dir`/ssh; both processes go into `children`. `pids`: sshd's
 * per-connection children (the "edge") and the client (the "connector").
 */
export async function startSshReverse(dir, originPort, children) {
  const sshDir = join(dir, 'ssh');
  execFileSync('mkdir', ['-p', sshDir]);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(sshDir, 'host')]);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(sshDir, 'client')]);
  writeFileSync(join(sshDir, 'authorized_keys'), readFileSync(join(sshDir, 'client.pub')));
  const sshdPort = await freePort();
  writeFileSync(
    join(sshDir, 'sshd_config'),
    [
      `Port ${sshdPort}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${join(sshDir, 'host')}`,
      `AuthorizedKeysFile ${join(sshDir, 'authorized_keys')}`,
      `PidFile ${join(sshDir, 'pid')}`,
      'StrictModes no',
      'UsePAM no',
      'PasswordAuthentication no',
      'AllowTcpForwarding yes',
      'PermitRootLogin prohibit-password',
      '',
    ].join('\n'),
  );
  const sshd = await spawnUntil('/usr/sbin/sshd', ['-D', '-e', '-f', join(sshDir, 'sshd_config')], /Server listening/);
  children.push(sshd.child);
  const remotePort = await freePort();
  const ssh = spawn(
    'ssh',
    [
      '-N',
      '-i',
      join(sshDir, 'client'),
      '-p',
      String(sshdPort),
      '-o',
      'StrictHostKeyChecking=no',
      '-o',
      'UserKnownHostsFile=/dev/null',
      '-o',
      'BatchMode=yes',
      '-o',
      'LogLevel=ERROR',
      '-R',
      `${remotePort}:127.0.0.1:${originPort}`,
      '127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  children.push(ssh);
  await waitListening(remotePort);
  return { url: `http://127.0.0.1:${remotePort}`, pids: { edge: family(sshd.child.pid), connector: [ssh.pid] } };
}
