import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { createServer, Server } from 'node:net';
import { afterEach, beforeEach } from 'vitest';
import { BIN, oxyOk, sharedHome, storeEnv } from './cli.js';

/** The open sockets of process `pid` (descriptors; files it opens now and then do not count). */
export function openSockets(pid: number): number {
  const dir = `/proc/${pid}/fd`;
  return readdirSync(dir).filter((fd) => {
    try {
      return readlinkSync(`${dir}/${fd}`).startsWith('socket:');
    } catch {
      return false; // closed meanwhile
    }
  }).length;
}

/** Ports oxyctl binds by itself (the connector's default metrics ports, the edge's default tunnel port): a test that took one would race a process started without flags. */
const FIXED_PORTS = new Set([20241, 20242, 20243, 20244, 20245, 7844]);

/**
 * A loopback port free right now for TCP and UDP, for a process that must come back on the
 * same port (an edge's tunnel listener and its QUIC socket). It lies below the kernel's
 * ephemeral range: a port the kernel handed out (port 0) may be given next to a client's
 * socket — a connector's QUIC socket redialling the killed edge took its port, and the edge
 * came back to EADDRINUSE.
 */
export async function freePort(): Promise<number> {
  const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 32768;
  const from = Math.max(1024, low - 16_000);
  if (low - from < 1000) throw new Error(`the ephemeral port range starts at ${low}: no room below it for test listeners`);
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = from + Math.floor(Math.random() * (low - from));
    if (FIXED_PORTS.has(port)) continue;
    if ((await bindable(createServer(), port)) && (await bindable(createSocket('udp4'), port))) return port;
  }
  throw new Error(`no free loopback port below ${low}`);
}

async function bindable(s: Server | UdpSocket, port: number): Promise<boolean> {
  const ok = await new Promise<boolean>((resolve) => {
    s.once('error', () => resolve(false));
    if (s instanceof Server) s.listen(port, '127.0.0.1', () => resolve(true));
    else s.bind(port, '127.0.0.1', () => resolve(true));
  });
  if (ok) await new Promise<void>((r) => s.close(() => r()));
  return ok;
}

/**
 * Children still running when the test worker exits (a hook that timed out, a start that failed
 * before the test kept the process) are SIGKILLed then: Node leaves children running otherwise.
 */
const running = new Set<ChildProcess>();
let exitHookInstalled = false;
export function killOnExit(child: ChildProcess): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of running) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    });
  }
  running.add(child);
  child.once('exit', () => running.delete(child));
}

/** A running oxyctl process whose stderr (logs) is collected and searchable. */
export class OxyProcess {
  readonly child: ChildProcess;
  output = '';
  #waiters: { re: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];

  constructor(home: string, args: string[], env: Record<string, string> = {}) {
    this.child = spawn(process.execPath, [BIN, ...args], {
      env: { ...process.env, OXY_HOME: home, NO_COLOR: '1', ...storeEnv(home), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    killOnExit(this.child);
    const onData = (d: Buffer) => {
      this.output += d.toString();
      this.#waiters = this.#waiters.filter((w) => {
        const m = this.output.match(w.re);
        if (m) w.resolve(m);
        return !m;
      });
    };
    this.child.stdout!.on('data', onData);
    this.child.stderr!.on('data', onData);
  }

  /** Waits until the output matches `re` (searching everything printed so far); the default bound allows for a loaded machine (a process start there takes 5-10 times its idle time). */
  waitFor(re: RegExp, timeoutMs = 30_000): Promise<RegExpMatchArray> {
    const m = this.output.match(re);
    if (m) return Promise.resolve(m);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${re} in:\n${this.output}`)), timeoutMs);
      this.#waiters.push({ re, resolve: (x) => (clearTimeout(timer), resolve(x)) });
    });
  }

  /** Counts matches of a global regex in the output so far. */
  count(re: RegExp): number {
    return [...this.output.matchAll(new RegExp(re.source, 'g'))].length;
  }

  /** For a failure message: running or how it ended, and its last line that names an error (a crash's cause). */
  state(): string {
    const { exitCode, signalCode } = this.child;
    const how = exitCode === null && signalCode === null ? 'running' : `exited (${signalCode ?? `code ${exitCode}`})`;
    const line = this.output
      .split('\n')
      .filter((l) => /error|uncaught|fatal|refused/i.test(l))
      .at(-1);
    return line ? `${how}, its last error line: ${line.slice(0, 240)}` : how;
  }

  exited(): Promise<number | null> {
    // A process ended by a signal has no exit code, only a signalCode.
    if (this.child.exitCode !== null || this.child.signalCode !== null) return Promise.resolve(this.child.exitCode);
    return new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }

  /**
   * Signals the process and waits for its exit; one that has not exited 15 s after a gentler
   * signal is SIGKILLed, so an after-hook cannot hang on a stuck process.
   */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.exited();
    this.child.kill(signal);
    if (signal === 'SIGKILL') return this.exited();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 15_000);
    try {
      return await this.exited();
    } finally {
      clearTimeout(timer);
    }
  }

  /** Waits for `re`; on failure (a start that never came) kills the process first, so it is not left behind. */
  async started(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray> {
    try {
      return await this.waitFor(re, timeoutMs);
    } catch (err) {
      this.kill();
      throw err;
    }
  }

  kill(): void {
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}

/** `edge run` on loopback with ephemeral tunnel, public-HTTP and metrics ports: the start of most test edges' arguments. */
export const LOOPBACK_EDGE: readonly string[] = ['edge', 'run', '--tunnel-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--metrics', '127.0.0.1:0'];

/** An edge on loopback with ephemeral ports; resolves once its listeners are ready. */
export async function startEdge(home: string, extra: string[] = [], ports: { tunnel?: number } = {}, env: Record<string, string> = {}) {
  const edge = new OxyProcess(
    home,
    ['edge', 'run', '--tunnel-listen', `127.0.0.1:${ports.tunnel ?? 0}`, '--http-listen', '127.0.0.1:0', '--metrics', '127.0.0.1:0', ...extra],
    env,
  );
  const tunnel = await edge.started(/Tunnel listener ready protocol=http2 address=127\.0\.0\.1:(\d+)/);
  const http = await edge.started(/Public HTTP listener ready address=127\.0\.0\.1:(\d+)/);
  return { edge, tunnelPort: Number(tunnel[1]), httpPort: Number(http[1]) };
}

/** Both tunnel transports: e2e suites run once over each. */
export const PROTOCOLS = ['http2', 'quic'] as const;
export type Protocol = (typeof PROTOCOLS)[number];

/** A connector for `tunnel` against a local edge; resolves once `connections` registered. */
/** `tunnel run` against a loopback edge's tunnel port over `protocol`, then `args`. */
export const tunnelRunArgs = (tunnelPort: number, protocol: Protocol, args: string[]): string[] => [
  'tunnel',
  'run',
  '--edge',
  `127.0.0.1:${tunnelPort}`,
  '--protocol',
  protocol,
  ...args,
];

export async function startConnector(home: string, tunnelPort: number, args: string[], connections = 4, protocol: Protocol = 'http2') {
  const c = new OxyProcess(home, tunnelRunArgs(tunnelPort, protocol, args));
  for (let i = 0; i < connections; i++) await c.started(new RegExp(`Registered tunnel connection connIndex=${i} `));
  const metrics = await c.started(/Starting metrics server on \/metrics address=127\.0\.0\.1:(\d+)/);
  return { connector: c, metricsPort: Number(metrics[1]) };
}

/** Tunnel `web` serving app.example.com: made once per test file, copied for each test. */
const webTunnelHome = sharedHome(async (home) => {
  await oxyOk(home, ['tunnel', 'create', 'web']);
  await oxyOk(home, ['tunnel', 'route', 'dns', 'web', 'app.example.com']);
});

/**
 * Per test, a fresh data directory holding tunnel `web` that serves app.example.com, and the
 * processes the test starts there (push them onto `procs`): SIGKILLed and removed after it.
 */
export function useWebTunnel(): { readonly home: string; readonly procs: OxyProcess[] } {
  const t = { home: '', procs: [] as OxyProcess[] };
  let cleanup = () => {};
  beforeEach(async () => {
    ({ home: t.home, cleanup } = await webTunnelHome());
    t.procs = [];
  });
  afterEach(async () => {
    await Promise.all(t.procs.map((p) => p.stop('SIGKILL')));
    cleanup();
  });
  return t;
}

/**
 * One edge process on loopback ports for store tests (HTTP/2 only, debug log), pushed to `procs`
 * (for the test to stop) before it is awaited: its process and ports.
 */
export async function startLoopbackEdge(home: string, location: string, procs: OxyProcess[], env?: Record<string, string>) {
  const proc = new OxyProcess(home, [...LOOPBACK_EDGE, '--location', location, '--no-quic', '--loglevel', 'debug'], env);
  procs.push(proc);
  const tunnel = await proc.waitFor(/Tunnel listener ready protocol=http2 address=127\.0\.0\.1:(\d+)/);
  const httpPort = await proc.waitFor(/Public HTTP listener ready address=127\.0\.0\.1:(\d+)/);
  return { proc, tunnel: Number(tunnel[1]), http: Number(httpPort[1]) };
}
