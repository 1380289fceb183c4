/**
 * The edge (`oxyctl edge run`): tunnel listeners (HTTP/2 over TLS, QUIC) where
 * connectors register, the public HTTP on-ramp that routes by Host to them, and the
 * metrics listener. Connections are recorded in the store while they live, so
 * `tunnel list` / `tunnel info` show them; those writes run off the event loop
 * (bookkeeping.ts), so a locked or full store never holds up traffic.
 */
import type { AddressInfo } from 'node:net';
import { Counter, Gauge } from 'prom-client';
import { newId, nowRfc3339 } from '../../core/common.js';
import { unknownVnetError } from '../../core/vnets.js';
import type { EdgeRecord, Store } from '../../store/index.js';
import { EDGE_FORGET_MS, EDGE_HEARTBEAT_MS, EDGE_TTL_MS } from '../../store/edges.js';
import type { Logger } from '../observe/log.js';
import { createRegistry, startMetricsServer, type MetricsServer } from '../observe/metrics.js';
import { TunnelCloseCode } from '../protocol/codes.js';
import { HTTP1_CHUNKED_FEATURE, HTTP1_STREAM_FEATURE } from '../protocol/http1.js';
import { TCP_FLOWS_FEATURE } from '../protocol/tcp-flows.js';
import { acceptRegistration } from '../protocol/registration.js';
import type { TunnelConnection } from '../transport/types.js';
import { watchSilence } from '../transport/common.js';
import { metaGet, readStreamHeader, ResponseStatus, writeResponseHeader } from '../protocol/stream-header.js';
import { HttpOnramp } from './http-onramp.js';
import { TunnelRegistry, type LiveConnection } from './registry.js';
import { Forwarding, type PeerCredentials } from './forwarding.js';
import { StoreView } from './store-view.js';
import { PrivateEgress } from './private-egress.js';
import type { ControlChannel } from '../protocol/control.js';
import { ConnectProxy } from './connect-proxy.js';
import { parseAllowEntry } from './proxy-policy.js';
import { HookRunner, saveHooksState, type HookContext, type IpOffRamp } from '../hooks/index.js';
import type { HttpTimeouts } from '../util/http-server.js';
import { Egress } from './pipeline/index.js';
import { TcpDowngrader } from '../netns/downgrader.js';
import { ConnectionBook } from './bookkeeping.js';
import { connectionWriter } from './store-writer.js';
import type { TrafficRecorder } from './traffic.js';
import { startIpPath, type IpPath, type IpPathOptions } from './ip-path.js';
import type { Siblings } from './handoff.js';

export interface TunnelListener {
  protocol: string;
  address: { address: string; port: number };
  /** QUIC: the library serving (ngtcp2, or quiche with `OXY_QUIC_SERVER_IMPL=quiche`). */
  quicServer?: 'ngtcp2' | 'quiche';
  close(): Promise<void>;
}

/**
 * Starts one tunnel listener (HTTP/2, QUIC) that hands each accepted connection over, with the
 * edge id of a peer link from another edge (its certificate checked by the listener);
 * `started` are the listeners started before it (QUIC takes the TLS listener's port).
 */
export type StartTunnelListener = (onConnection: (conn: TunnelConnection, peerEdgeId?: string) => void, started: TunnelListener[]) => Promise<TunnelListener>;

export interface EdgeOptions {
  store: Store;
  log: Logger;
  /** Edge location name, shown to connectors and in `tunnel list` (CONNECTIONS column). */
  location: string;
  /** HOST:PORT connectors dial (`edge init --advertise`): recorded in the edge registry when the tunnel listener is on a wildcard address. */
  advertise?: string;
  /** `advertise` is this edge's own (`edge run --advertise`): recorded whatever the listener's address. */
  advertiseAlways?: boolean;
  tunnelListeners: StartTunnelListener[];
  /** HOST:PORT of the public HTTP on-ramp; undefined: none. */
  httpListen?: string;
  metricsListen?: string;
  /** Quick tunnel: serve every host without a hostname route from this tunnel. */
  defaultTunnel?: string;
  /** How often a SQLite store is polled for changes made by the CLI (PostgreSQL notifies). */
  storePollMs?: number;
  /** HOST:PORT of the HTTP CONNECT forward proxy on-ramp; undefined: none. */
  proxyListen?: string;
  /** Client timeouts of the public HTTP, proxy and metrics listeners; default HTTP_TIMEOUTS. */
  httpTimeouts?: Partial<HttpTimeouts>;
  /** `--proxy-allow`: destinations the forward proxy may connect to (CIDR[:PORTS]); without it (and without hooks that decide) none. */
  proxyAllow?: string[];
  /** The forward proxy and the public HTTP listener expect a PROXY protocol v1/v2 header on every connection. */
  proxyProtocol?: boolean;
  /** The application's hooks (`--hooks`); default: none (the engine's defaults). */
  hooks?: HookRunner;
  /** Where `lifecycle.stateForRestart` is saved on stop (OXY_HOME); unset: not saved. */
  home?: string;
  /** Counts on-ramp traffic for the dashboard (`--dashboard-listen`); unset: not counted. */
  traffic?: TrafficRecorder;
  /** This edge's id in the edge registry (its peer certificate names it); default: a new one. */
  id?: string;
  /** The edge process group its edges row names (`edge run --workers`: the primary's); default: its own id. */
  group?: string;
  /** The edge CA and this edge's peer certificate: forwarding to and from other edges of the store; unset: none. */
  peer?: PeerCredentials;
  /** The IP path's on-ramps (SEQPACKET, GUE) and limits; unset: no IP path (devices refused). */
  ip?: Omit<IpPathOptions, 'edge' | 'log'>;
  /** Share the TCP listeners' addresses with the edge's other workers (SO_REUSEPORT; `edge run --workers`). */
  reusePort?: boolean;
  /** Clear the connection records an earlier run at this location left (default true; a worker's sibling or restart must not). */
  forgetEarlierRun?: boolean;
  /** The edge's other workers (`edge run --workers`): told the tunnels this one holds, and handed public connections it does not serve. */
  siblings?: Siblings;
}

/** A device connected to this edge now (warp connect --token). */
export interface ConnectedDevice {
  ip: string;
  protocol: string;
  since: Date;
  /** The vnet its IP stream named ('' = the default); undefined until that stream opens. */
  vnet?: string;
}

/** How long the edge's own store connection waits on another process's lock (on the event loop). */
const EDGE_BUSY_TIMEOUT_MS = 100;

export class EdgeServer {
  readonly registry: TunnelRegistry;
  readonly view: StoreView;
  /** Serves tunnels held by other edges, and theirs held here (edge-to-edge forwarding). */
  readonly forwarding: Forwarding;
  /** Writes live connections to the store, off the event loop. */
  readonly book: ConnectionBook;
  /** This edge's id in the store's edge registry (`oxyctl edge list`), new at every start. */
  readonly id: string;
  #heartbeat?: NodeJS.Timeout;
  #startedAt = new Date().toISOString();
  readonly metrics = createRegistry('oxy_edge');
  readonly egress: PrivateEgress;
  readonly #controls = new Map<LiveConnection, ControlChannel>();
  /** Devices connected now, by device ID. */
  readonly devices = new Map<string, ConnectedDevice>();
  #listeners: TunnelListener[] = [];
  #onStop: (() => unknown)[] = [];
  #http?: HttpOnramp;
  #metricsServer?: MetricsServer;
  #proxy?: ConnectProxy;
  #ip?: IpPath;
  /** The application's hooks (none: the engine's defaults). */
  readonly hooks: HookRunner;
  /** The egress pipeline shared by on-ramps (hooks, then direct or through a tunnel). */
  readonly hookedEgress: Egress;
  readonly #connectionsGauge: Gauge;
  readonly #registrations: Counter<'result'>;
  readonly #requests: Counter<'status'>;
  readonly #handoffs: Counter;
  readonly #opening: Gauge;

  constructor(private readonly o: EdgeOptions) {
    // What the edge itself still does on its own connection (reads; the dashboard's writes)
    // must not hold the event loop for the CLI's 10 s: a lock held longer fails that call.
    o.store.setBusyTimeout(EDGE_BUSY_TIMEOUT_MS);
    this.view = new StoreView(o.store, o.storePollMs, o.log);
    this.id = o.id ?? newId();
    this.forwarding = new Forwarding({
      view: this.view,
      id: this.id,
      location: o.location,
      log: o.log,
      credentials: o.peer,
      local: (tunnelId, http1) => this.registry.pickLocal(tunnelId, http1),
      peerAddress: o.siblings && ((holder) => o.siblings?.peerAddress(holder.edgeId, holder.tunnelAddress)),
      siblings: o.siblings,
      streams: new Counter({
        name: 'oxy_edge_forwarded_streams_total',
        help: 'Streams forwarded between edges: out (to the edge holding the tunnel), in (served for another edge)',
        labelNames: ['direction'],
        registers: [this.metrics],
      }),
    });
    this.registry = new TunnelRegistry(this.forwarding);
    this.book = new ConnectionBook(connectionWriter(o.store), o.log);
    // Connections an earlier run at this location recorded are gone with it.
    if (o.forgetEarlierRun !== false) this.book.forgetAt(o.location);
    this.egress = new PrivateEgress(this.view, this.registry);
    this.hooks = o.hooks ?? HookRunner.none(o.log);
    this.hookedEgress = new Egress({ runner: this.hooks, tunnels: this.egress, vnets: (ref) => this.view.vnet(ref), downgrader: () => this.#downgrader() });
    // Connectors learn route changes made with the CLI as soon as the view reloads; the
    // connections of a tunnel deleted meanwhile (`tunnel delete --force`) are closed.
    this.view.on('reload', () => {
      for (const [live, control] of this.#controls) {
        if (!this.view.isLiveTunnel(live.tunnelId)) {
          // Once: a second reload can come before this close lands (deleting while iterating a Map is safe).
          this.#controls.delete(live);
          this.o.log.info({ tunnelID: live.tunnelId, connIndex: live.connIndex, connection: live.id }, 'Tunnel deleted; closing its connection');
          live.conn.close(TunnelCloseCode.UNAUTHORIZED, 'tunnel deleted');
        } else this.#sendRoutes(live, control);
      }
    });
    this.#connectionsGauge = new Gauge({ name: 'oxy_edge_tunnel_connections', help: 'Registered connector connections', registers: [this.metrics] });
    this.#registrations = new Counter({
      name: 'oxy_edge_registrations_total',
      help: 'Connector registrations by result',
      labelNames: ['result'],
      registers: [this.metrics],
    });
    this.#handoffs = new Counter({
      name: 'oxy_edge_worker_handoffs_total',
      help: 'Public connections handed to the worker that holds their tunnel (edge run --workers)',
      registers: [this.metrics],
    });
    this.#opening = new Gauge({
      name: 'oxy_edge_http_opening_bytes',
      help: 'Request body bytes the public listener holds while tunnel streams open (bounded per request)',
      registers: [this.metrics],
    });
    this.#requests = new Counter({
      name: 'oxy_edge_http_requests_total',
      help: 'Public HTTP requests by response status',
      labelNames: ['status'],
      registers: [this.metrics],
    });
  }

  get tunnelAddresses(): { protocol: string; address: { address: string; port: number } }[] {
    return this.#listeners.map((l) => ({ protocol: l.protocol, address: l.address }));
  }

  get httpAddress(): AddressInfo | undefined {
    return this.#http?.address;
  }

  get proxyAddress(): AddressInfo | undefined {
    return this.#proxy?.address;
  }

  get metricsAddress(): AddressInfo | undefined {
    return this.#metricsServer?.address;
  }

  /**
   * Starts the parts in dependency order: the store view, the IP path (it routes through the
   * view, the registry and the hooks built by the constructor), then the listeners that feed
   * them, so nothing is reachable before what serves it exists.
   */
  async start(): Promise<void> {
    await this.view.start();
    if (this.o.ip) this.#ip = await startIpPath({ edge: this, log: this.o.log, ...this.o.ip });
    const accept = (conn: TunnelConnection, peer?: string) => (peer ? this.forwarding.serve(conn, peer) : void this.#register(conn));
    for (const start of this.o.tunnelListeners) this.#listeners.push(await start(accept, this.#listeners));
    if (this.o.httpListen) {
      this.#http = await HttpOnramp.listen({
        listen: this.o.httpListen,
        reusePort: this.o.reusePort,
        siblings: this.o.siblings,
        onHandOff: () => this.#handoffs.inc(),
        view: this.view,
        registry: this.registry,
        log: this.o.log,
        runner: this.hooks,
        proxyProtocol: this.o.proxyProtocol,
        requests: this.#requests,
        opening: this.#opening,
        defaultTunnel: this.o.defaultTunnel,
        timeouts: this.o.httpTimeouts,
        traffic: this.o.traffic,
      });
    }
    if (this.o.proxyListen) {
      this.#proxy = await ConnectProxy.listen({
        listen: this.o.proxyListen,
        reusePort: this.o.reusePort,
        runner: this.hooks,
        egress: this.hookedEgress,
        log: this.o.log,
        proxyProtocol: this.o.proxyProtocol,
        traffic: this.o.traffic,
        allow: this.o.proxyAllow?.map(parseAllowEntry),
        ownPorts: () => this.#ownPorts(),
        timeouts: this.o.httpTimeouts,
        vnets: (ref) => this.view.vnet(ref),
      });
    }
    if (this.o.metricsListen) {
      this.#metricsServer = await startMetricsServer(
        this.o.metricsListen,
        this.metrics,
        () => ({ readyConnections: this.#listeners.length }),
        {},
        this.o.httpTimeouts,
      );
    }
    for (const l of this.#listeners) {
      const library = l.quicServer ? { quicServer: l.quicServer } : {};
      this.o.log.info({ protocol: l.protocol, address: `${l.address.address}:${l.address.port}`, ...library }, 'Tunnel listener ready');
    }
    const pp = this.o.proxyProtocol ? { proxyProtocol: true } : {};
    if (this.httpAddress) this.o.log.info({ address: `${this.httpAddress.address}:${this.httpAddress.port}`, ...pp }, 'Public HTTP listener ready');
    if (this.proxyAddress) this.o.log.info({ address: `${this.proxyAddress.address}:${this.proxyAddress.port}`, ...pp }, 'CONNECT proxy listener ready');
    // The edge registry: recorded now, renewed while it runs, through the book (never awaited).
    // Now and then it also forgets edges dead for long, with their connections.
    let beats = 0;
    const beat = () => {
      this.book.beat(this.#record());
      if (beats++ % 60 === 0) this.book.prune(new Date(Date.now() - EDGE_FORGET_MS).toISOString());
    };
    beat();
    this.#heartbeat = setInterval(beat, EDGE_HEARTBEAT_MS).unref();
  }

  /** The tunnel address this edge records in the edge registry. */
  get recordedTunnelAddress(): string {
    return this.#record().tunnelAddress;
  }

  #record(): EdgeRecord {
    const l = this.#listeners[0]?.address;
    const wildcard = !l || l.address === '0.0.0.0' || l.address === '::';
    const tunnelAddress =
      wildcard || this.o.advertiseAlways ? (this.o.advertise ?? '') : l.address.includes(':') ? `[${l.address}]:${l.port}` : `${l.address}:${l.port}`;
    return {
      id: this.id,
      location: this.o.location,
      tunnelAddress,
      startedAt: this.#startedAt,
      heartbeatAt: new Date().toISOString(),
      groupId: this.o.group ?? this.id,
    };
  }

  /** The TCP ports this edge listens on (the forward proxy never connects to them on this host). */
  #ownPorts(): number[] {
    return [...this.#listeners.map((l) => l.address.port), this.httpAddress?.port, this.metricsAddress?.port].filter((p): p is number => p !== undefined);
  }

  async #register(conn: TunnelConnection): Promise<void> {
    let reg;
    try {
      reg = await acceptRegistration(conn, {
        lookupSecret: async (id) => {
          await this.view.settle();
          return this.view.tunnelSecret(id) ?? this.view.deviceSecret(id);
        },
        location: this.o.location,
      });
    } catch (err) {
      this.#registrations.inc({ result: 'refused' });
      this.o.log.warn({ err, ip: conn.remoteAddress, protocol: conn.protocol }, 'Refused tunnel connection');
      return;
    }
    const r = reg.request;
    this.#watchSilence(conn, r.tunnelId);
    if (r.features.includes('device') || !this.view.tunnelSecret(r.tunnelId)) {
      await this.#serveDevice(conn, r.tunnelId, reg.control);
      return;
    }
    const live: LiveConnection = {
      id: reg.connectionId,
      tunnelId: r.tunnelId,
      connectorId: r.connectorId,
      connIndex: r.connIndex,
      conn,
      draining: false,
      http1: r.features.includes(HTTP1_STREAM_FEATURE),
      http1Chunked: r.features.includes(HTTP1_CHUNKED_FEATURE),
      tcpFlows: r.features.includes(TCP_FLOWS_FEATURE),
    };
    this.#checkSiblings(live);
    this.registry.add(live);
    this.#tellSiblings();
    this.#registrations.inc({ result: 'ok' });
    this.#connectionsGauge.set(this.registry.size);
    const [clientVersion = '', arch = ''] = r.clientVersion.split(' ');
    this.book.record({
      id: live.id,
      tunnelId: live.tunnelId,
      connectorId: live.connectorId,
      connIndex: live.connIndex,
      protocol: conn.protocol,
      originIp: conn.remoteAddress,
      edgeLocation: this.o.location,
      clientVersion,
      arch,
      openedAt: nowRfc3339(),
      edgeId: this.id,
    });
    this.o.log.info(
      { tunnelID: live.tunnelId, connIndex: live.connIndex, connection: live.id, ip: conn.remoteAddress, protocol: conn.protocol },
      'Registered tunnel connection',
    );
    reg.control.on('drain', () => {
      live.draining = true;
      for (const f of live.onDrain ?? []) f();
    });
    this.#controls.set(live, reg.control);
    this.#sendRoutes(live, reg.control);
    const closed = await conn.closed;
    this.#controls.delete(live);
    this.registry.remove(live);
    this.#tellSiblings();
    this.#connectionsGauge.set(this.registry.size);
    this.book.forget(live.id);
    this.o.log.info(
      { tunnelID: live.tunnelId, connIndex: live.connIndex, connection: live.id, code: closed.code, reason: closed.reason },
      'Unregistered tunnel connection',
    );
  }

  /**
   * A connector whose host froze or vanished sends no FIN: over HTTP/2 its connection would stay
   * registered (and listed by `tunnel list` on every edge) until TCP gave up, minutes later. Each
   * connection is asked for a PING answer every heartbeat interval, again while unanswered (ngtcp2
   * never retransmits a lost PING); one silent for as long as a dead edge's heartbeat takes to go
   * stale (EDGE_TTL_MS, 15 s) is closed, which unregisters it.
   */
  #watchSilence(conn: TunnelConnection, tunnelId: string): void {
    watchSilence(conn, {
      everyMs: EDGE_HEARTBEAT_MS,
      silentMs: EDGE_TTL_MS,
      onSilent: (silent) => {
        this.o.log.warn({ tunnelID: tunnelId, silentMs: Math.round(silent), ip: conn.remoteAddress }, 'The connector went silent; closing its connection');
        conn.close(TunnelCloseCode.TRANSPORT_LOST, 'the connector went silent');
      },
    });
  }

  #tellSiblings(): void {
    this.o.siblings?.held(this.registry.connections().map((c) => c.tunnelId));
  }

  /**
   * A (re)registration says the connector's other connections may be dead: a connector
   * killed over QUIC says nothing, and its connections would look idle until the idle
   * timeout. The same connector redialling an index closes the old connection at once; the
   * tunnel's other connections are probed, and picked only once they answered (or when no
   * other connection is ready).
   */
  #checkSiblings(live: LiveConnection): void {
    for (const old of this.registry.superseded(live)) {
      this.o.log.info({ tunnelID: old.tunnelId, connIndex: old.connIndex, connection: old.id }, 'Closing a connection its connector has replaced');
      old.conn.close(TunnelCloseCode.NO_ERROR, 'superseded by a new registration of the same connector');
    }
    for (const other of this.registry.connections(live.tunnelId)) {
      other.probing = true;
      void other.conn.probe().then((answered) => (other.probing = !answered));
    }
  }

  /**
   * The edge's own IP network of a connection's (tenant, vnet) as an off-ramp for `downgrade`
   * egress; hooks reach it as `settings.vnetOffRamp(ctx)`. Undefined without the IP path.
   */
  vnetOffRamp(ctx: HookContext): IpOffRamp | undefined {
    return this.#ip?.vnetOffRamp(ctx.tenant ?? this.view.accountTag, ctx.vnet);
  }

  /** The IP path's flow engine, when --ip-tunnel-listen or --gue-listen runs one. */
  get ipEdge(): IpPath['ipEdge'] | undefined {
    return this.#ip?.ipEdge;
  }

  #downgraderPromise?: Promise<TcpDowngrader>;

  /** The TCP downgrader for `downgrade` egress, in a namespace of its own; made on first use. */
  #downgrader(): Promise<TcpDowngrader> {
    this.#downgraderPromise ??= TcpDowngrader.create().then(
      (d) => {
        this.onStop(() => d.close());
        return d;
      },
      (err: Error) => {
        this.#downgraderPromise = undefined;
        throw err;
      },
    );
    return this.#downgraderPromise;
  }

  /**
   * A device (warp connect --token): its `ip-packets` streams join the IP path; the routes of
   * its vnet go to it over the control stream (again whenever they change, so it can steer
   * them into its TUN), and revoking it (`warp revoke`) closes its connection at the next
   * store reload.
   */
  async #serveDevice(conn: TunnelConnection, deviceId: string, control: ControlChannel): Promise<void> {
    const serve = this.#ip?.deviceStreams;
    if (!this.view.deviceSecret(deviceId) || !serve) {
      this.o.log.warn({ device: deviceId }, 'Refused device connection: not an enrolled device, or this edge has no IP path (--ip-tunnel-listen)');
      conn.close(TunnelCloseCode.PROTOCOL_ERROR, 'this edge does not serve devices');
      return;
    }
    this.o.log.info({ device: deviceId, ip: conn.remoteAddress, protocol: conn.protocol }, 'Device connected');
    const connected: ConnectedDevice = { ip: conn.remoteAddress, protocol: conn.protocol, since: new Date() };
    this.devices.set(deviceId, connected);
    let vnetId: string | undefined;
    let sent = '';
    const sendRoutes = () => {
      if (vnetId === undefined || !control.isOpen) return;
      const routes = this.view.routesInVnet(vnetId);
      const key = routes.map((r) => r.network).join(',');
      if (key === sent) return;
      sent = key;
      control.send({ type: 'routes', routes }).catch(() => undefined);
    };
    const onReload = () => {
      if (!this.view.deviceSecret(deviceId)) {
        // Once, as for deleted tunnels: a second reload can come before the close lands.
        this.view.off('reload', onReload);
        this.o.log.info({ device: deviceId }, 'Device revoked; closing its connection');
        conn.close(TunnelCloseCode.UNAUTHORIZED, 'device revoked');
        return;
      }
      sendRoutes();
    };
    this.view.on('reload', onReload);
    conn.onStream(async (stream) => {
      stream.on('error', () => undefined);
      try {
        const header = await readStreamHeader(stream, { expect: 'request', timeoutMs: 30_000 });
        if (header.kind !== 'ip-packets') {
          writeResponseHeader(stream, { status: ResponseStatus.BAD_REQUEST, message: 'devices send ip-packets streams', metadata: [] });
          stream.end();
          return;
        }
        // The device's vnet, resolved once: an unknown one is refused now, with its code.
        const named = metaGet(header.metadata, 'Vnet') ?? '';
        const vnet = this.view.vnet(named);
        if (!vnet) {
          const err = unknownVnetError(named);
          writeResponseHeader(stream, { status: ResponseStatus.BAD_REQUEST, message: err.message, metadata: [['Error-Code', err.code]] });
          stream.end();
          return;
        }
        if (!this.view.deviceMayUse(deviceId, vnet.id)) {
          this.o.log.warn({ device: deviceId, vnet: vnet.name }, 'Refused a device stream: the device may not use this virtual network');
          const message = `This device may not use the virtual network ${vnet.name}: it was enrolled for others (warp enroll --vnet)`;
          writeResponseHeader(stream, { status: ResponseStatus.BAD_REQUEST, message, metadata: [['Error-Code', 'OXY_ERR_VNET_NOT_ALLOWED']] });
          stream.end();
          return;
        }
        writeResponseHeader(stream, { status: ResponseStatus.OK, message: '', metadata: [] });
        vnetId = vnet.id;
        connected.vnet = vnet.id;
        serve(stream, vnet);
        sent = '';
        sendRoutes();
      } catch {
        stream.destroy();
      }
    });
    const closed = await conn.closed;
    this.view.off('reload', onReload);
    if (this.devices.get(deviceId) === connected) this.devices.delete(deviceId);
    this.o.log.info({ device: deviceId, code: closed.code, reason: closed.reason }, 'Device disconnected');
  }

  #sendRoutes(live: LiveConnection, control: ControlChannel): void {
    if (!control.isOpen) return;
    control.send({ type: 'routes', routes: this.view.routesForTunnel(live.tunnelId) }).catch(() => undefined);
  }

  /** Something started alongside the edge (the IP path, on-ramps) to stop with it, first. */
  onStop(fn: () => unknown): void {
    this.#onStop.push(fn);
  }

  async stop(): Promise<void> {
    for (const fn of this.#onStop.splice(0)) await fn();
    this.forwarding.stop();
    await this.#ip?.close();
    await Promise.all([...this.#listeners.map((l) => l.close()), this.#http?.close(), this.#metricsServer?.close(), this.#proxy?.close()]);
    if (this.o.home) await saveHooksState(this.hooks, this.o.home);
    for (const live of this.registry.connections()) {
      live.conn.close(TunnelCloseCode.SHUTDOWN, 'edge shutting down');
      this.book.forget(live.id);
    }
    clearInterval(this.#heartbeat);
    this.book.edgeDown(this.id);
    await this.book.close();
    await this.view.stop();
  }
}
