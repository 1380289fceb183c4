import type { Store } from '../../store/index.js';
import type { OxyError } from '../../core/errors.js';
import type { Logger } from '../observe/log.js';
import { nodeHttpInternals, type HttpTimeouts } from '../util/http-server.js';
import { newId } from '../../core/common.js';
import { createPeerCertificate } from '../transport/identity.js';
import { checkAdvertise, edgeIdentityExists, initEdgeIdentity, loadEdgeIdentity } from '../transport/identity-files.js';
import { http2TunnelListener, quicTunnelListener } from './listeners.js';
import { EdgeServer } from './server.js';
import { loadHooks, type HookContext, type HookRunner } from '../hooks/index.js';
import { checkGueListen, type IpPathOptions } from './ip-path.js';
import { TrafficRecorder } from './traffic.js';
import { DashboardServer } from './dashboard/server.js';
import type { WorkerLink, WorkerSpec } from './workers.js';
import { tuneGcForDataPlane } from '../util/gc.js';
import { idleTimeForUserCode } from '../native/index.js';

export interface RunEdgeOptions {
  home: string;
  store: Store;
  log: Logger;
  tunnelListen: string;
  httpListen?: string;
  metricsListen?: string;
  location: string;
  /** HOST:PORT connectors dial to reach this edge (`edge run --advertise`); default: `edge init --advertise` on a wildcard listener, else the listener. */
  advertise?: string;
  defaultTunnel?: string;
  /** SEQPACKET path for connected IP tunnels (warp connect). */
  ipTunnelListen?: string;
  /** Also accept QUIC on UDP at the tunnel port (default true). */
  quic?: boolean;
  /** HOST:PORT for GUE (unconnected IP tunnels). */
  gueListen?: string;
  /** Flow limits of the IP path. */
  ipLimits?: IpPathOptions['limits'];
  /** HOST:PORT of the HTTP CONNECT forward proxy (`--proxy-listen`). */
  proxyListen?: string;
  /** Client timeouts of the HTTP listeners (edge.yml http-timeouts); default HTTP_TIMEOUTS. */
  httpTimeouts?: Partial<HttpTimeouts>;
  /** `--proxy-allow`: destinations the forward proxy may connect to. */
  proxyAllow?: string[];
  /** The forward proxy and the public HTTP listener expect a PROXY v1/v2 header (`--proxy-protocol`). */
  proxyProtocol?: boolean;
  /** A hooks module to load (`--hooks`), or a runner made by the caller (tests). */
  hooks?: string | HookRunner;
  /** Record and log the order hooks fire per connection (`--trace-hooks`). */
  traceHooks?: boolean;
  /** HOST:PORT of the web dashboard (`--dashboard-listen`); unset: none. */
  dashboardListen?: string;
  /** Serve the dashboard over HTTPS with the edge's certificate. */
  dashboardTls?: boolean;
  /** Allow the dashboard on a non-loopback address without TLS. */
  dashboardInsecure?: boolean;
  /** This process is one worker of `edge run --workers N` (workers.ts): what it shares and runs alone, and its siblings. */
  worker?: WorkerLink;
}

/**
 * A worker's options: the shared listeners on the addresses the primary gives (SO_REUSEPORT),
 * no metrics listener (the primary serves it), and what cannot be shared only in worker 0.
 * Every worker keeps the IP path when one is configured: devices dial the shared tunnel port.
 */
function asWorker(o: RunEdgeOptions, w: WorkerSpec): RunEdgeOptions {
  const alone = w.index === 0;
  return {
    ...o,
    tunnelListen: w.listen.tunnel,
    httpListen: w.listen.http,
    proxyListen: w.listen.proxy,
    metricsListen: undefined,
    ipTunnelListen: alone ? o.ipTunnelListen : undefined,
    gueListen: alone ? o.gueListen : undefined,
    dashboardListen: alone ? o.dashboardListen : undefined,
  };
}

/** Starts an edge from the data directory (creating its identity on first run). */
export async function runEdge(options: RunEdgeOptions): Promise<EdgeServer> {
  tuneGcForDataPlane();
  const o = options.worker ? asWorker(options, options.worker.spec) : options;
  const hasIp = Boolean(options.ipTunnelListen || options.gueListen);
  const shared = { reusePort: Boolean(o.worker) };
  // A store read from a copy (read-only directory, full disk) would never show a change: refuse.
  if (o.store.driver.unwritable) throw o.store.driver.unwritable;
  if (o.advertise) checkAdvertise(o.advertise);
  if (o.gueListen) checkGueListen(o.gueListen, (await o.store.devices.list()).length);
  const internals = nodeHttpInternals();
  if (!internals.usable)
    o.log.warn(
      { missing: internals.missing.join(',') || undefined, switchedOff: internals.switchedOff || undefined },
      "Refusals on Node's HTTP servers close once their answer is flushed, without draining the client's body (OXY_HTTP_INTERNALS=0, or this Node lacks what util/http-server.ts uses)",
    );
  if (!edgeIdentityExists(o.home)) {
    try {
      await initEdgeIdentity(o.home);
      o.log.info({ dir: `${o.home}/edge` }, 'Created the edge identity (oxyctl edge init)');
    } catch (err) {
      // Another edge on this data directory created it first: use that one.
      if ((err as OxyError).code !== 'OXY_ERR_EDGE_EXISTS') throw err;
    }
  }
  const identity = loadEdgeIdentity(o.home);
  // The one cycle: hooks may ask for the edge's vnet off-ramp while traffic flows, and the
  // edge runs the hooks. The closure reads `edge`, built right below, only at traffic time.
  const vnetOffRamp = (ctx: HookContext) => edge.vnetOffRamp(ctx);
  if (typeof o.hooks === 'string') idleTimeForUserCode();
  const hooks =
    typeof o.hooks === 'string' ? await loadHooks(o.hooks, { home: o.home, location: o.location, log: o.log, trace: o.traceHooks, vnetOffRamp }) : o.hooks;
  const traffic = o.dashboardListen ? new TrafficRecorder() : undefined;
  // Forwarding between the store's edges: a peer certificate of the shared CA, minted per start.
  const id = newId();
  const peer = identity.caKey ? { ca: identity.caCert, ...(await createPeerCertificate(identity.caCert, identity.caKey, id)) } : undefined;
  if (!peer)
    o.log.warn(
      { dir: `${o.home}/edge` },
      'No CA key in the edge directory: this edge neither forwards to nor serves other edges (copy ca-key.pem from the first edge)',
    );
  const edge = new EdgeServer({
    id,
    peer,
    store: o.store,
    log: o.log,
    location: o.location,
    advertise: o.advertise ?? identity.settings.advertise,
    advertiseAlways: o.advertise !== undefined,
    tunnelListeners: [
      // A worker's connections on the tunnel port come from the primary, which places each (workers.ts).
      http2TunnelListener(o.tunnelListen, { key: identity.key, cert: identity.certChain, peerCa: peer?.ca }, o.log, {
        placed: o.worker && ((adopt) => o.worker?.onTunnelSocket(adopt)),
      }),
      ...(o.quic === false
        ? []
        : [quicTunnelListener(o.tunnelListen, { key: identity.key, cert: identity.certChain }, o.log, { ...shared, fd: o.worker?.spec.quicFd })]),
      // A worker's own door for its siblings' peer links: the shared port lands on any worker.
      ...(o.worker && peer
        ? [http2TunnelListener('127.0.0.1:0', { key: identity.key, cert: identity.certChain, peerCa: peer.ca }, o.log, { name: 'peer' })]
        : []),
    ],
    httpListen: o.httpListen,
    metricsListen: o.metricsListen,
    defaultTunnel: o.defaultTunnel,
    proxyListen: o.proxyListen,
    proxyAllow: o.proxyAllow,
    httpTimeouts: o.httpTimeouts,
    proxyProtocol: o.proxyProtocol,
    hooks,
    home: o.home,
    traffic,
    ip: hasIp ? { seqpacketPath: o.ipTunnelListen, gueListen: o.gueListen, limits: o.ipLimits } : undefined,
    reusePort: shared.reusePort,
    forgetEarlierRun: o.worker?.spec.forgetEarlierRun,
    group: o.worker?.spec.group,
    siblings: o.worker,
  });
  // Starting waits on children whose handles are unref'd (the IP path's namespace child answers
  // over its IPC channel): with nothing else open yet — a worker without the SEQPACKET on-ramp,
  // whose channel to the primary is unref'd too — Node would exit mid-start (code 13).
  const starting = setInterval(() => undefined, 60_000);
  try {
    await edge.start();
  } finally {
    clearInterval(starting);
  }
  const ipEdge = edge.ipEdge;
  if (o.dashboardListen && traffic) {
    const dashboard = await DashboardServer.listen({
      listen: o.dashboardListen,
      log: o.log,
      store: o.store,
      view: edge.view,
      traffic,
      devices: edge.devices,
      defaultTunnel: o.defaultTunnel,
      flows: ipEdge && (() => ipEdge.table.activeByScope()),
      tls: o.dashboardTls ? { key: identity.key, cert: identity.certChain } : undefined,
      insecure: o.dashboardInsecure,
      timeouts: o.httpTimeouts,
    });
    edge.onStop(() => dashboard.close());
    o.log.info({ url: dashboard.url }, 'Dashboard ready (log in with the token from: oxyctl edge dashboard-token)');
  }
  return edge;
}
