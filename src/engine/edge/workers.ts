/**
 * `edge run --workers N`: one edge over N processes, so the data plane uses every core.
 *
 * The primary (the process the user started) runs no traffic: it starts N workers — each the
 * same `edge run` command, a full edge, told its part in OXY_EDGE_WORKER — restarts a worker
 * that dies (with backoff, logged), serves the one metrics listener (the workers' metrics
 * summed), and on SIGTERM/SIGINT stops them all and waits for their drain.
 *
 * Workers share the public listeners (HTTP, CONNECT proxy) and the QUIC UDP socket with
 * SO_REUSEPORT: each has sockets of its own on the same address and the kernel spreads
 * connections (and QUIC 4-tuples) over them by hash, with no hop through the primary. The
 * tunnel port's TCP listener (HTTP/2 connectors, devices, peer edges) is the primary's: it
 * places each connection, before its TLS handshake, in the worker holding the fewest (fd
 * passing), so a connector's HA connections spread evenly over the workers and each of them
 * serves the tunnel's public traffic itself (the kernel's hash left all 4 in one worker 1 time
 * in 8, 3 + 1 half the time). A tunnel connection is long-lived: one hop at its start.
 * What cannot be shared runs in worker 1 only: the SEQPACKET on-ramp (a unix socket path),
 * GUE (its sessions live in one flow table) and the dashboard. Each worker is an edge of its
 * own in the store's edge registry (`oxyctl edge list` shows one row per worker, with the same
 * tunnel address), and reads the store through its own view, as separate edges do.
 *
 * The first worker starts alone with the configured addresses (port 0 allowed) and reports
 * the ports it bound; the others, and every restart, listen on those.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createServer, Socket, type AddressInfo, type Server as TcpServer, type SocketConstructorOpts } from 'node:net';
import { detach, sendHandle, type RawHandle, type Siblings } from './handoff.js';
import { AggregatorRegistry, Counter, Gauge, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import { newId } from '../../core/common.js';
import { OxyError } from '../../core/errors.js';
import type { Logger } from '../observe/log.js';
import { startMetricsServer, type MetricsServer } from '../observe/metrics.js';
import type { HttpTimeouts } from '../util/http-server.js';
import { splitHostPort } from '../../core/address.js';
import { reusePortGroup, type ReusePortGroup } from '../native/reuseport.js';

/** The environment variable that makes `edge run` a worker (its value: a WorkerSpec as JSON). */
export const WORKER_ENV = 'OXY_EDGE_WORKER';

/** The addresses every worker listens on (SO_REUSEPORT). */
export interface SharedListen {
  tunnel: string;
  http?: string;
  proxy?: string;
}

/** A worker as its siblings' forwarding reaches it: its edge id, its private peer listener, and the tunnel address it records (shared by all). */
interface Peer {
  edgeId: string;
  address: string;
  recorded: string;
  /** Its slot (0-based), set by the primary. */
  index?: number;
}

/** What the primary tells a worker. */
export interface WorkerSpec {
  /** 0-based; worker 0 also runs what cannot be shared (SEQPACKET, GUE, dashboard). */
  index: number;
  count: number;
  listen: SharedListen;
  /** The edge process group its edges row names (an id the primary makes at start): `edge list` shows the workers as one edge. */
  group: string;
  /** Clear the connection records an earlier run at this location left: the first start of worker 0 only. */
  forgetEarlierRun: boolean;
  /** Which workers hold which tunnels when it starts (then updates over the channel). */
  holders: Holders;
  /** The other workers' peer listeners when it starts (then updates). */
  peers: Peer[];
  /** The fd of its QUIC socket, a member of the primary's SO_REUSEPORT group (reusePortGroup); unset: none. */
  quicFd?: number;
}

/** Per tunnel, the workers (0-based) holding a connection of it. */
type Holders = [tunnelId: string, workers: number[]][];

type Metrics = MetricObjectWithValues<MetricValue<string>>[];
type ToPrimary =
  | { type: 'ready'; listen: SharedListen; peer?: Peer }
  | { type: 'metrics'; id: number; metrics: Metrics }
  | { type: 'held'; tunnels: string[] }
  | { type: 'handoff'; to: number; head: string }
  /** The tunnel-port connections it has open, and the last placement (`seq`) it has received. */
  | { type: 'tunnel-sockets'; open: number; seen: number };
type ToWorker =
  | { type: 'metrics'; id: number }
  | { type: 'holders'; holders: Holders; peers: Peer[] }
  | { type: 'handoff'; to: number; head: string }
  /** A tunnel-port connection the primary accepted (the handle goes with it), numbered. */
  | { type: 'tunnel'; seq: number };

/** This process's part when the primary started it; undefined in a process the user started. */
export function workerSpec(env: NodeJS.ProcessEnv = process.env): WorkerSpec | undefined {
  const raw = env[WORKER_ENV];
  return raw ? (JSON.parse(raw) as WorkerSpec) : undefined;
}

/** What decides whether the edge may default to one worker per core. */
export interface WorkerDefaults {
  cores: number;
  /** An on-ramp that reaches tunnels through the registry (CONNECT proxy, hooks, PROXY headers, IP path), so across workers only by forwarding. */
  needsForwarding?: string;
  /** The edge can forward between workers (it has the CA key to mint peer certificates). */
  canForward: boolean;
}

/**
 * `--workers` when not given: one per core where a request reaching a worker that holds no
 * connection of its tunnel still reaches one that does — public HTTP by the hand-off
 * (handoff.ts), everything else by forwarding to the sibling's peer listener (forwarding.ts),
 * which needs the edge CA's key; without it, an edge with such on-ramps stays in one process
 * and says why.
 */
export function defaultWorkers(o: WorkerDefaults): { count: number; why?: string } {
  if (!o.needsForwarding || o.canForward || o.cores === 1) return { count: o.cores };
  return {
    count: 1,
    why: `${o.needsForwarding} needs forwarding between workers, and there is no CA key in the edge directory: one process (give --workers to override)`,
  };
}

/** A worker restarted after a crash waits this long, doubling per crash in a row up to RESTART_MAX_MS. */
const RESTART_MIN_MS = 250;
const RESTART_MAX_MS = 8000;
/** A worker that ran this long before it died starts its backoff over. */
const STABLE_MS = 30_000;
/** How long a stop waits for a worker's drain before SIGKILL. */
const STOP_TIMEOUT_MS = 30_000;
/** How long a scrape waits for each worker's metrics. */
const SCRAPE_TIMEOUT_MS = 2000;

/** What a worker in the running edge needs from it. */
export interface WorkerEdge {
  id: string;
  /** The tunnel address it records in the edge registry. */
  recordedTunnelAddress: string;
  metrics: Registry;
  tunnelAddresses: { protocol: string; address: { address: string; port: number } }[];
  httpAddress?: AddressInfo;
  proxyAddress?: AddressInfo;
}

const hostPort = (a: { address: string; port: number }) => (a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`);

/**
 * The worker's side of the primary's channel: reports its bound addresses and the tunnels it
 * holds connections of, learns which siblings hold which, answers metrics scrapes, and passes
 * client connections to siblings (handoff.ts) and takes theirs.
 */
export class WorkerLink implements Siblings {
  /** Per tunnel, the sibling workers holding a connection of it (from the primary). */
  #holders = new Map<string, number[]>();
  #peers = new Map<string, Peer>();
  /** The tunnel address this worker (and so every sibling) records in the edge registry. */
  #recorded?: string;
  #turn = 0;
  #held = '';
  #adopt?: (socket: Socket, head: Buffer) => void;
  #adoptTunnel?: (socket: Socket) => void;
  /** Tunnel-port connections the primary placed here that are open, and the last one's number. */
  #tunnelSockets = 0;
  #seen = 0;

  constructor(readonly spec: WorkerSpec) {
    // The channel to the primary must not keep a stopped worker alive (the edge's handles do while it runs).
    process.channel?.unref();
    this.#learn(spec.holders, spec.peers);
    process.on('message', (m: ToWorker, handle?: RawHandle) => {
      if (m?.type === 'holders') this.#learn(m.holders, m.peers);
      else if (m?.type === 'handoff' && handle) {
        if (!this.#adopt) return handle.close();
        const socket = new Socket({ handle, readable: true, writable: true } as unknown as SocketConstructorOpts);
        socket.on('error', () => socket.destroy());
        this.#adopt(socket, Buffer.from(m.head, 'base64'));
      } else if (m?.type === 'tunnel' && handle) this.#takeTunnel(m.seq, handle);
    });
  }

  /** A tunnel-port connection the primary placed here: to the tunnel listener (TLS), counted while open. */
  #takeTunnel(seq: number, handle: RawHandle): void {
    this.#seen = seq;
    if (!this.#adoptTunnel) {
      handle.close();
      return this.#reportTunnelSockets();
    }
    // Unread until TLS takes the handle over: bytes read into the JS stream first would be lost to it.
    const socket = new Socket({ handle, readable: true, writable: true, pauseOnCreate: true } as unknown as SocketConstructorOpts);
    socket.on('error', () => socket.destroy());
    this.#tunnelSockets++;
    socket.once('close', () => {
      this.#tunnelSockets--;
      this.#reportTunnelSockets();
    });
    this.#reportTunnelSockets();
    this.#adoptTunnel(socket);
  }

  #reportTunnelSockets(): void {
    send({ type: 'tunnel-sockets', open: this.#tunnelSockets, seen: this.#seen });
  }

  /** Where the tunnel-port connections the primary places in this worker go (the HTTP/2 tunnel listener). */
  onTunnelSocket(fn: (socket: Socket) => void): void {
    this.#adoptTunnel = fn;
  }

  #learn(holders: Holders, peers: Peer[]): void {
    this.#holders = new Map(holders.map(([t, ws]) => [t, ws.filter((w) => w !== this.spec.index)]));
    this.#peers = new Map(peers.map((p) => [p.edgeId, p]));
  }

  siblingHolders(tunnelId: string): { edgeId: string; tunnelAddress: string }[] {
    const ws = this.#holders.get(tunnelId);
    if (!ws?.length) return [];
    return [...this.#peers.values()].filter((p) => p.index !== undefined && ws.includes(p.index)).map((p) => ({ edgeId: p.edgeId, tunnelAddress: p.recorded }));
  }

  siblingHoldsAnything(edgeId: string): boolean {
    const index = this.#peers.get(edgeId)?.index;
    if (index === undefined) return false;
    for (const ws of this.#holders.values()) if (ws.includes(index)) return true;
    return false;
  }

  peerAddress(edgeId: string, tunnelAddress: string): string | null | undefined {
    const sibling = this.#peers.get(edgeId);
    if (sibling) return sibling.address;
    return this.#recorded !== undefined && tunnelAddress === this.#recorded ? null : undefined;
  }

  holder(tunnelId: string): number | undefined {
    const ws = this.#holders.get(tunnelId);
    return ws?.length ? ws[this.#turn++ % ws.length] : undefined;
  }

  handOff(to: number, handle: RawHandle, head: Buffer): void {
    const m: ToPrimary = { type: 'handoff', to, head: head.toString('base64') };
    sendHandle((h, done) => process.send?.(m, h, {}, done), handle);
  }

  /** Where connections handed over by siblings go (the public listener's front). */
  onAdopt(fn: (socket: Socket, head: Buffer) => void): void {
    this.#adopt = fn;
  }

  /** The tunnels this worker holds connections of now (sent when the set changed). */
  held(tunnelIds: Iterable<string>): void {
    const tunnels = [...new Set(tunnelIds)].sort();
    const key = tunnels.join(',');
    if (key === this.#held) return;
    this.#held = key;
    send({ type: 'held', tunnels });
  }

  /**
   * Reports the worker ready and answers scrapes; resolves when the primary is gone (it died:
   * nobody would stop or restart this worker), so the caller drains and exits as on a signal.
   */
  serve(edge: WorkerEdge): Promise<'primary gone'> {
    process.on('message', (m: ToWorker) => {
      if (m?.type !== 'metrics') return;
      void edge.metrics.getMetricsAsJSON().then(
        (metrics) => send({ type: 'metrics', id: m.id, metrics }),
        () => send({ type: 'metrics', id: m.id, metrics: [] }),
      );
    });
    const [tunnel] = edge.tunnelAddresses;
    const peerListener = edge.tunnelAddresses.find((l) => l.protocol === 'peer');
    this.#recorded = edge.recordedTunnelAddress;
    send({
      type: 'ready',
      listen: {
        tunnel: hostPort(tunnel.address),
        http: edge.httpAddress && hostPort(edge.httpAddress),
        proxy: edge.proxyAddress && hostPort(edge.proxyAddress),
      },
      peer: peerListener && { edgeId: edge.id, address: hostPort(peerListener.address), recorded: edge.recordedTunnelAddress },
    });
    return new Promise((resolve) => process.once('disconnect', () => resolve('primary gone')));
  }
}

function send(m: ToPrimary): void {
  process.send?.(m, undefined, {}, () => undefined);
}

/** Runs the same command again as worker `spec` (same Node flags, same arguments). */
export function forkSelf(spec: WorkerSpec, fds: number[] = []): ChildProcess {
  return fork(process.argv[1]!, process.argv.slice(2), {
    env: { ...process.env, [WORKER_ENV]: JSON.stringify(spec) },
    execArgv: process.execArgv,
    // A process group of its own: a terminal's Ctrl-C reaches the primary only, which then
    // stops the workers itself (and SIGKILLs one that has not drained in STOP_TIMEOUT_MS).
    detached: true,
    // fds[i] becomes the worker's fd 4 + i.
    stdio: ['ignore', 'inherit', 'inherit', 'ipc', ...fds],
  });
}

export interface PrimaryOptions {
  count: number;
  log: Logger;
  listen: SharedListen;
  metricsListen?: string;
  httpTimeouts?: Partial<HttpTimeouts>;
  /** The workers listen for QUIC too (on the tunnel port). */
  quic: boolean;
  /** Starts a worker process with `fds` as its fds 4…; default forkSelf. */
  spawn?: (spec: WorkerSpec, fds: number[]) => ChildProcess;
}

interface Slot {
  index: number;
  child?: ChildProcess;
  ready: boolean;
  startedAt: number;
  crashes: number;
  restarts: number;
  restart?: NodeJS.Timeout;
  /** Tunnels it holds connections of. */
  held: string[];
  /** Its private peer listener, once ready. */
  peer?: Peer;
  /** Tunnel-port connections open in it (its last report), and placements sent after the last one it had seen then. */
  tunnelSockets: number;
  placed: number[];
}

export class EdgePrimary {
  readonly #slots: Slot[];
  readonly #spawn: (spec: WorkerSpec, fds: number[]) => ChildProcess;
  #group?: ReusePortGroup;
  /** The tunnel port's TCP listener: each connection goes to the worker with the fewest (#place). */
  #tunnelServer?: TcpServer;
  #placements = 0;
  #listen: SharedListen;
  #stopping = false;
  #metricsServer?: MetricsServer;
  #scrapes = 0;
  readonly #own = new Registry();
  readonly #restarts: Counter;
  /** The edge process group the workers' edges rows name. */
  readonly #groupId = newId();

  /** Starts worker 1, then the others on the ports it bound; rejects (having stopped them) if one exits before it is ready. */
  static async start(o: PrimaryOptions): Promise<EdgePrimary> {
    const primary = new EdgePrimary(o);
    try {
      // The tunnel port and its QUIC sockets, held here for the edge's life (reusePortGroup).
      const { host, port } = splitHostPort(o.listen.tunnel);
      primary.#group = await reusePortGroup(host, port, o.quic ? o.count : 0);
      primary.#listen = { ...o.listen, tunnel: hostPort(primary.#group) };
      await primary.#startSlot(primary.#slots[0]!, true);
      await primary.#listenTunnel(primary.#group.takeTcp());
      await Promise.all(primary.#slots.slice(1).map((s) => primary.#startSlot(s, false)));
      if (o.metricsListen) {
        const aggregate = { contentType: primary.#own.contentType, metrics: () => primary.#scrape() };
        const ready = () => ({ readyConnections: primary.readyWorkers });
        primary.#metricsServer = await startMetricsServer(o.metricsListen, aggregate, ready, { '/workers': () => primary.#workersDocument() }, o.httpTimeouts);
      }
    } catch (err) {
      await primary.stop();
      throw err;
    }
    o.log.info({ workers: o.count, pids: primary.pids.join(',') }, 'Edge workers ready');
    return primary;
  }

  private constructor(private readonly o: PrimaryOptions) {
    this.#slots = Array.from({ length: o.count }, (_, index) => ({
      index,
      ready: false,
      startedAt: 0,
      crashes: 0,
      restarts: 0,
      held: [],
      tunnelSockets: 0,
      placed: [],
    }));
    this.#spawn = o.spawn ?? forkSelf;
    this.#listen = o.listen;
    const ready = () => this.readyWorkers;
    new Gauge({
      name: 'oxy_edge_workers',
      help: 'Edge worker processes running and ready',
      registers: [this.#own],
      collect() {
        this.set(ready());
      },
    });
    this.#restarts = new Counter({ name: 'oxy_edge_worker_restarts_total', help: 'Edge worker processes restarted after they died', registers: [this.#own] });
  }

  get metricsAddress(): AddressInfo | undefined {
    return this.#metricsServer?.address;
  }

  get readyWorkers(): number {
    return this.#slots.filter((s) => s.ready).length;
  }

  /** The workers' process IDs (running ones). */
  get pids(): number[] {
    return this.#slots.flatMap((s) => (s.child?.pid && s.child.exitCode === null ? [s.child.pid] : []));
  }

  #startSlot(slot: Slot, first: boolean): Promise<void> {
    const spec: WorkerSpec = {
      index: slot.index,
      count: this.o.count,
      group: this.#groupId,
      listen: this.#listen,
      forgetEarlierRun: first && slot.index === 0,
      holders: this.#holders(),
      peers: this.#peers(),
    };
    const quic = this.#group?.udp[slot.index];
    if (quic !== undefined) spec.quicFd = 4;
    const child = this.#spawn(spec, quic === undefined ? [] : [quic]);
    const pid = child.pid;
    slot.child = child;
    slot.ready = false;
    slot.startedAt = Date.now();
    return new Promise((resolve, reject) => {
      child.on('error', (err) => this.o.log.error({ err, worker: slot.index + 1 }, 'Edge worker process error'));
      child.on('message', (m: ToPrimary, handle?: RawHandle) => {
        if (m?.type === 'held') {
          slot.held = m.tunnels;
          this.#tellHolders();
        } else if (m?.type === 'handoff' && handle) this.#relay(slot, m, handle);
        else if (m?.type === 'tunnel-sockets') {
          slot.tunnelSockets = m.open;
          slot.placed = slot.placed.filter((seq) => seq > m.seen);
        } else if (m?.type === 'ready' && !slot.ready) {
          slot.ready = true;
          slot.peer = m.peer;
          this.#tellHolders();
          // Port 0 is now the port worker 1 bound: every other worker, and every restart, takes it.
          if (slot.index === 0) this.#listen = m.listen;
          resolve();
        }
      });
      child.once('exit', (code, signal) => {
        const wasReady = slot.ready;
        slot.ready = false;
        slot.tunnelSockets = 0;
        slot.placed = [];
        if (slot.held.length || slot.peer) {
          slot.held = [];
          slot.peer = undefined;
          this.#tellHolders();
        }
        if (!wasReady) {
          reject(
            new OxyError('OXY_ERR_EDGE_WORKER', `Edge worker ${slot.index + 1} exited (${signal ?? `code ${code}`}) before it was ready; its error is above`, {
              exitCode: code || 1,
            }),
          );
        }
        if (this.#stopping || !wasReady) return;
        this.#restartLater(slot, pid, code, signal);
      });
    });
  }

  #restartLater(slot: Slot, pid: number | undefined, code: number | null, signal: NodeJS.Signals | null): void {
    slot.crashes = Date.now() - slot.startedAt >= STABLE_MS ? 1 : slot.crashes + 1;
    const delayMs = Math.min(RESTART_MAX_MS, RESTART_MIN_MS * 2 ** (slot.crashes - 1));
    this.o.log.error({ worker: slot.index + 1, workerPid: pid, code, signal, restartInMs: delayMs }, 'Edge worker died; restarting it');
    slot.restart = setTimeout(() => {
      slot.restart = undefined;
      if (this.#stopping) return;
      this.#restarts.inc();
      slot.restarts++;
      this.#startSlot(slot, false).then(
        () => this.o.log.info({ worker: slot.index + 1, workerPid: slot.child?.pid }, 'Edge worker restarted'),
        // It died again before it was ready: its exit handler did not schedule a restart.
        () => !this.#stopping && this.#restartLater(slot, slot.child?.pid, slot.child?.exitCode ?? null, slot.child?.signalCode ?? null),
      );
    }, delayMs);
  }

  /** Tells every worker which workers hold which tunnels. */
  #holders(): Holders {
    const holders = new Map<string, number[]>();
    for (const s of this.#slots) for (const t of s.held) holders.set(t, [...(holders.get(t) ?? []), s.index]);
    return [...holders];
  }

  #peers(): Peer[] {
    return this.#slots.flatMap((s) => (s.peer ? [{ ...s.peer, index: s.index }] : []));
  }

  #tellHolders(): void {
    const m: ToWorker = { type: 'holders', holders: this.#holders(), peers: this.#peers() };
    for (const s of this.#slots) if (s.child?.connected) s.child.send(m, undefined, {}, () => undefined);
  }

  /** Listens on the tunnel port's TCP socket (held since start, bound): from now on connectors, devices and peer edges reach the workers through #place. */
  async #listenTunnel(fd: number): Promise<void> {
    const server = createServer({ pauseOnConnect: true }, (socket) => this.#place(socket));
    this.#tunnelServer = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ fd }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    // After listen: accept failures (EMFILE) are logged; the listener keeps accepting.
    server.on('error', (err) => this.o.log.error({ err }, 'Tunnel listener error'));
  }

  /**
   * A tunnel-port connection, unread: to the ready worker with the fewest such connections
   * (those it reported, plus those sent since that it had not seen yet); on a tie, the next in
   * turn. With none ready it is closed (connectors redial).
   */
  #place(socket: Socket): void {
    socket.on('error', () => socket.destroy());
    const n = this.#slots.length;
    let best: Slot | undefined;
    let fewest = Infinity;
    for (let i = 0; i < n; i++) {
      const s = this.#slots[(this.#placements + i) % n]!;
      if (!s.ready || !s.child?.connected) continue;
      const load = s.tunnelSockets + s.placed.length;
      if (load < fewest) [best, fewest] = [s, load];
    }
    const handle = best && detach(socket, []);
    if (!best?.child || !handle) return void socket.destroy();
    const seq = ++this.#placements;
    best.placed.push(seq);
    const child = best.child;
    sendHandle((h, done) => child.send({ type: 'tunnel', seq } satisfies ToWorker, h, {}, done), handle);
  }

  /** A client connection a worker hands to a sibling; back to the sender when the sibling is gone (it serves it then). */
  #relay(from: Slot, m: { to: number; head: string }, handle: RawHandle): void {
    const target = this.#slots[m.to];
    const to = target?.ready && target.child?.connected ? target : from;
    if (!to.child?.connected) return handle.close();
    const child = to.child;
    sendHandle((h, done) => child.send({ type: 'handoff', to: to.index, head: m.head } satisfies ToWorker, h, {}, done), handle);
  }

  /** Every ready worker's metrics, summed (counters and gauges) into one document. */
  async #scrape(): Promise<string> {
    const each = await this.#scrapeEach();
    return AggregatorRegistry.aggregate([await this.#own.getMetricsAsJSON(), ...each.map((m) => m ?? [])]).metrics();
  }

  /** `/workers` on the metrics listener: each worker's process, restarts and share of the traffic. */
  async #workersDocument(): Promise<unknown> {
    const each = await this.#scrapeEach();
    const total = (metrics: Metrics | undefined, name: string) => metrics?.find((m) => m.name === name)?.values.reduce((sum, v) => sum + v.value, 0);
    return this.#slots.map((s, i) => ({
      worker: s.index + 1,
      pid: s.child?.pid,
      ready: s.ready,
      restarts: s.restarts,
      tunnelConnections: total(each[i], 'oxy_edge_tunnel_connections'),
      httpRequests: total(each[i], 'oxy_edge_http_requests_total'),
      handoffs: total(each[i], 'oxy_edge_worker_handoffs_total'),
    }));
  }

  /** Each worker's metrics (undefined: not ready, or no answer in time), in slot order. */
  #scrapeEach(): Promise<(Metrics | undefined)[]> {
    const id = ++this.#scrapes;
    return Promise.all(
      this.#slots.map((s) => {
        const child = s.child;
        if (!s.ready || !child?.connected) return undefined;
        return new Promise<Metrics | undefined>((resolve) => {
          const done = (m: Metrics | undefined) => {
            clearTimeout(timer);
            child.off('message', onMessage);
            resolve(m);
          };
          const onMessage = (m: ToPrimary) => m?.type === 'metrics' && m.id === id && done(m.metrics);
          const timer = setTimeout(() => done(undefined), SCRAPE_TIMEOUT_MS).unref();
          child.on('message', onMessage);
          child.send({ type: 'metrics', id } satisfies ToWorker, (err) => err && done(undefined));
        });
      }),
    );
  }

  /** Stops every worker (SIGTERM: each drains as a single edge does), then the metrics listener. */
  async stop(): Promise<void> {
    this.#stopping = true;
    // No new tunnel connections into workers that drain (connectors dial another edge meanwhile).
    const tunnelClosed = new Promise((resolve) => (this.#tunnelServer ? this.#tunnelServer.close(resolve) : resolve(undefined)));
    const running = this.#slots.flatMap((s) => {
      clearTimeout(s.restart);
      const child = s.child;
      return child && child.exitCode === null && child.signalCode === null ? [child] : [];
    });
    await Promise.all(
      running.map(
        (child) =>
          new Promise<void>((resolve) => {
            const kill = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS).unref();
            child.once('exit', () => {
              clearTimeout(kill);
              resolve();
            });
            child.kill('SIGTERM');
          }),
      ),
    );
    await this.#metricsServer?.close();
    await tunnelClosed;
    this.#group?.close();
  }
}
