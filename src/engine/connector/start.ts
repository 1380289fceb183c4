/**
 * Starting a connector from what `tunnel run` (or the quick tunnel) resolved: credentials,
 * edge and trust, ingress rules and dialer; then the supervisor and its metrics server.
 */
import { writeFileSync } from 'node:fs';
import type { Logger } from '../observe/log.js';
import type { OriginRequest } from './ingress.js';
import { createRegistry, metricsAddresses, startMetricsServer, type MetricsServer } from '../observe/metrics.js';
import { createConnectorMetrics, registerFinHoldMetrics, registerUdpPayloadMetrics } from './metrics.js';
import { OriginProxy } from './origin.js';
import { StreamHandler } from './stream-handler.js';
import { HTTP1_CHUNKED_FEATURE, HTTP1_STREAM_FEATURE } from '../protocol/http1.js';
import { TCP_FLOWS_FEATURE } from '../protocol/tcp-flows.js';
import { Connector } from './supervisor.js';
import { quicClientImpl } from '../transport/quic/index.js';
import { EdgeSpread } from './spread.js';
import { PrivateOfframp } from './private.js';
import { DEFAULT_WARP_ROUTING } from './config.js';
import {
  buildIngress,
  clientVersion,
  createDialer,
  resolveCredentials,
  resolveEdgeHost,
  resolveEdges,
  type CredentialSources,
  type ProtocolChoice,
} from './run.js';
import { tuneGcForDataPlane } from '../util/gc.js';
import { flowFinHolds } from '../native/index.js';

/**
 * What a connector runs with: typed, camelCase, durations already in milliseconds. The CLI
 * maps its cloudflared-named flags onto it once (cli/tunnel-run-flags.ts connectorOptions).
 */
export interface ConnectorOptions {
  protocol: ProtocolChoice;
  /** HOST:PORT of the edge, or several comma-separated [default: from the token or credentials, else the local edge]. */
  edge?: string;
  /** PEM file of the edge's CA. */
  edgeCa?: string;
  /** The IP family a named edge is dialled in. */
  edgeIpVersion?: '4' | '6' | 'auto';
  edgeBindAddress?: string;
  /** The single origin (without ingress rules in a config). */
  url?: string;
  helloWorld?: boolean;
  bastion?: boolean;
  unixSocket?: string;
  haConnections: number;
  /** Retries for connection/protocol errors before giving up. */
  retries?: number;
  /** How long a stop waits for in-flight requests. */
  gracePeriodMs: number;
  /** HOST:PORT of the metrics server. */
  metrics: string;
  pidfile?: string;
  label?: string;
  /** Overrides warp-routing maxActiveFlows. */
  maxActiveFlows?: number;
  /** Source addresses of ICMP messages to private networks, per family. */
  icmpSource?: { 4?: string; 6?: string };
  /** The single origin's settings (cloudflared's origin flags); a config's rules keep theirs. */
  originRequest: OriginRequest;
  /** Where the log is also written (--logfile / --log-directory), for `tunnel diag`. */
  logFile?: string;
}

export interface StartedConnector {
  connector: Connector;
  offramp: PrivateOfframp;
  metrics: MetricsServer;
  origins: OriginProxy;
  stop(graceMs?: number): Promise<void>;
}

/** Resolves credentials, edge, ingress and dialer, then starts the supervisor and metrics. */
export async function startConnector(log: Logger, o: CredentialSources & { options: ConnectorOptions; version: string }): Promise<StartedConnector> {
  tuneGcForDataPlane();
  const f = o.options;
  const { creds, caPin } = await resolveCredentials(o);
  const edges = resolveEdges(o.home, creds, { edge: f.edge, edgeCa: f.edgeCa, caPin });
  // A name is resolved once, in the family --edge-ip-version asks for; the TLS name stays the name.
  for (const e of edges) {
    const address = await resolveEdgeHost(e.host, f.edgeIpVersion);
    if (address !== e.host) Object.assign(e, { servername: e.host, host: address });
  }
  const edgeList = edges.map((e) => `${e.host}:${e.port}`).join(',');
  const ingress = buildIngress({
    config: o.config,
    url: f.url,
    helloWorld: f.helloWorld,
    bastion: f.bastion,
    unixSocket: f.unixSocket,
    originRequest: f.originRequest,
  });
  const origins = new OriginProxy(ingress, log);
  await origins.start();
  const warpRouting = { ...(o.config?.warpRouting ?? DEFAULT_WARP_ROUTING) };
  if (f.maxActiveFlows !== undefined) warpRouting.maxActiveFlows = f.maxActiveFlows;
  const offramp = new PrivateOfframp(warpRouting, log, f.icmpSource ?? {});
  const registry = createRegistry('oxy_connector');
  // The connector is made below; the gauge reads it at scrape time.
  const metricsOf = createConnectorMetrics(registry, () => connector.readyConnections);
  registerUdpPayloadMetrics(registry, () => offramp.udpCounters);
  registerFinHoldMetrics(registry, flowFinHolds);
  const handler = new StreamHandler(
    origins,
    log,
    { tcp: offramp.handleTcp, 'tcp-flows': offramp.handleTcpFlows, udp: offramp.handleUdp, 'ip-packets': offramp.handleIcmp },
    metricsOf,
  );
  const spread = new EdgeSpread(
    edges.map((e) => createDialer(f.protocol, e, log, f.edgeBindAddress)),
    edges.map((e) => `${e.servername ?? e.host}:${e.port}`),
  );
  const connector = new Connector({
    tunnelId: creds.TunnelID,
    secret: Buffer.from(creds.TunnelSecret, 'base64'),
    dial: spread.dial,
    spread,
    handler,
    log,
    version: clientVersion(o.version),
    haConnections: f.haConnections,
    maxRetries: f.retries,
    // This connector serves http1 streams (one per client connection): the edge uses them only with
    // connectors that say so. OXY_HTTP1_STREAMS=0 leaves them out (an older peer, for tests and bench/peers.js);
    // =nochunked announces them without chunked request bodies (a peer before those: they go per request).
    features: [
      ...(process.env.OXY_HTTP1_STREAMS === '0'
        ? []
        : process.env.OXY_HTTP1_STREAMS === 'nochunked'
          ? [HTTP1_STREAM_FEATURE]
          : [HTTP1_STREAM_FEATURE, HTTP1_CHUNKED_FEATURE]),
      // Private TCP flows on reused streams; OXY_TCP_FLOWS=0 leaves them out (an older peer: a stream per flow).
      ...(process.env.OXY_TCP_FLOWS === '0' ? [] : [TCP_FLOWS_FEATURE]),
    ],
    onControlMessage: (m) => {
      if (m.type === 'routes') offramp.setRoutes(m.routes);
    },
  });
  connector.on('registered', (_i, connectionId, info) => metricsOf.connectionRegistered(connectionId, info.location, info.protocol));
  connector.on('unregistered', (_i, info) => metricsOf.connectionClosed(info.connectionId, info.protocol));
  connector.on('failed', () => metricsOf.connectionFailed(f.protocol));
  const metrics = await startMetricsServer(
    metricsAddresses(f.metrics),
    registry,
    () => ({ readyConnections: connector.readyConnections, connectorId: connector.connectorId }),
    {
      // What `tunnel diag` collects from a running connector (cloudflared's /diag/configuration and /diag/tunnel).
      '/diag/configuration': () => ({
        uid: String(process.getuid?.() ?? ''),
        logfile: f.logFile ?? '',
        config_file: o.config?.source ?? '',
        protocol: f.protocol,
        ha_connections: f.haConnections,
        version: clientVersion(o.version),
      }),
      '/diag/tunnel': () => ({
        tunnelID: creds.TunnelID,
        connectorID: connector.connectorId,
        edge: edgeList,
        connections: connector
          .connections()
          .map((c, index) => ({ index, isConnected: c !== undefined, protocol: c?.protocol ?? '', edgeAddress: c?.remoteAddress ?? '' })),
        icmpSources: f.icmpSource ?? {},
      }),
    },
  );
  if (f.pidfile) {
    const pidfile = f.pidfile;
    connector.once('registered', () => {
      try {
        writeFileSync(pidfile, `${process.pid}\n`);
      } catch (err) {
        log.error({ err, pidfile }, 'Cannot write the pidfile');
      }
    });
  }
  log.info(
    {
      tunnelID: creds.TunnelID,
      connectorID: connector.connectorId,
      edge: edgeList,
      protocol: f.protocol,
      // Which QUIC library dials: the addon's ngtcp2 client, or quiche with OXY_QUIC_IMPL=quiche.
      ...(f.protocol !== 'http2' ? { quicClient: quicClientImpl() } : {}),
      ...(f.label ? { label: f.label } : {}),
    },
    'Starting tunnel',
  );
  log.info({ address: `${metrics.address.address}:${metrics.address.port}` }, 'Starting metrics server on /metrics');
  connector.start();
  return {
    connector,
    offramp,
    metrics,
    origins,
    stop: async (graceMs = f.gracePeriodMs) => {
      await connector.stop(graceMs);
      await Promise.all([metrics.close(), origins.close()]);
    },
  };
}
