/**
 * Starting a connector from what `tunnel run` (or the quick tunnel) resolved: credentials,
 * edge and trust, ingress rules and dialer; then the supervisor and its metrics server.
 */
import { writeFileSync } from 'node:fs';
import type { Logger } from '../observe/log.js';
import { DEFAULT_ORIGIN_REQUEST, type OriginRequest } from './ingress.js';
import { createRegistry, startMetricsServer, type MetricsServer } from '../observe/metrics.js';
import { parseDuration } from './duration.js';
import { OriginProxy } from './origin.js';
import { StreamHandler } from './stream-handler.js';
import { Connector } from './supervisor.js';
import { PrivateOfframp } from './private.js';
import { DEFAULT_WARP_ROUTING } from './config.js';
import { buildIngress, clientVersion, createDialer, resolveCredentials, resolveEdge, resolveEdgeHost, type CredentialSources, type ProtocolChoice } from './run.js';

export interface ConnectorRunFlags {
  protocol: ProtocolChoice;
  edge?: string;
  'edge-ca'?: string;
  'edge-ip-version'?: '4' | '6' | 'auto';
  'edge-bind-address'?: string;
  url?: string;
  'hello-world'?: boolean;
  bastion?: boolean;
  'unix-socket'?: string;
  'ha-connections': number;
  retries?: number;
  'grace-period': string;
  metrics: string;
  pidfile?: string;
  label?: string;
  'max-active-flows'?: number;
  'icmpv4-src'?: string;
  'icmpv6-src'?: string;
  'no-tls-verify'?: boolean;
  'origin-ca-pool'?: string;
  'origin-server-name'?: string;
  'http-host-header'?: string;
  'proxy-connect-timeout'?: string;
  'proxy-tls-timeout'?: string;
  'proxy-tcp-keepalive'?: string;
  'proxy-no-happy-eyeballs'?: boolean;
  'proxy-keepalive-connections'?: number;
  'proxy-keepalive-timeout'?: string;
  'no-chunked-encoding'?: boolean;
  'http2-origin'?: boolean;
}

/** The single origin's settings from cloudflared's origin flags (they do not touch a config's rules). */
export function originRequestFromFlags(f: ConnectorRunFlags): OriginRequest {
  const o: OriginRequest = { ...DEFAULT_ORIGIN_REQUEST };
  const ms = (v: string | undefined, flag: string, fallback: number) => (v === undefined ? fallback : parseDuration(v, `--${flag}`));
  o.connectTimeoutMs = ms(f['proxy-connect-timeout'], 'proxy-connect-timeout', o.connectTimeoutMs);
  o.tlsTimeoutMs = ms(f['proxy-tls-timeout'], 'proxy-tls-timeout', o.tlsTimeoutMs);
  o.tcpKeepAliveMs = ms(f['proxy-tcp-keepalive'], 'proxy-tcp-keepalive', o.tcpKeepAliveMs);
  o.keepAliveTimeoutMs = ms(f['proxy-keepalive-timeout'], 'proxy-keepalive-timeout', o.keepAliveTimeoutMs);
  if (f['proxy-keepalive-connections'] !== undefined) o.keepAliveConnections = f['proxy-keepalive-connections'];
  o.noTLSVerify = f['no-tls-verify'] === true;
  o.noHappyEyeballs = f['proxy-no-happy-eyeballs'] === true;
  o.disableChunkedEncoding = f['no-chunked-encoding'] === true;
  o.http2Origin = f['http2-origin'] === true;
  o.bastionMode = f.bastion === true;
  if (f['origin-ca-pool']) o.caPool = f['origin-ca-pool'];
  if (f['origin-server-name']) o.originServerName = f['origin-server-name'];
  if (f['http-host-header']) o.httpHostHeader = f['http-host-header'];
  return o;
}

export interface StartedConnector {
  connector: Connector;
  offramp: PrivateOfframp;
  metrics: MetricsServer;
  origins: OriginProxy;
  stop(graceMs?: number): Promise<void>;
}

/** Resolves credentials, edge, ingress and dialer, then starts the supervisor and metrics. */
export async function startConnector(
  log: Logger,
  o: CredentialSources & { flags: ConnectorRunFlags; version: string },
): Promise<StartedConnector> {
  const f = o.flags;
  const { creds, caPin } = resolveCredentials(o);
  const edge = resolveEdge(o.home, creds, { edge: f.edge, edgeCa: f['edge-ca'], caPin });
  // A name is resolved once, in the family --edge-ip-version asks for; the TLS name stays the name.
  const address = await resolveEdgeHost(edge.host, f['edge-ip-version']);
  if (address !== edge.host) Object.assign(edge, { servername: edge.host, host: address });
  const ingress = buildIngress({
    config: o.config,
    url: f.url,
    helloWorld: f['hello-world'],
    bastion: f.bastion,
    unixSocket: f['unix-socket'],
    originRequest: originRequestFromFlags(f),
  });
  const origins = new OriginProxy(ingress, log);
  await origins.start();
  const warpRouting = { ...(o.config?.warpRouting ?? DEFAULT_WARP_ROUTING) };
  if (f['max-active-flows'] !== undefined) warpRouting.maxActiveFlows = f['max-active-flows'];
  const offramp = new PrivateOfframp(warpRouting, log, { 4: f['icmpv4-src'], 6: f['icmpv6-src'] });
  const handler = new StreamHandler(origins, log, { tcp: offramp.handleTcp, udp: offramp.handleUdp, 'ip-packets': offramp.handleIcmp });
  const connector = new Connector({
    tunnelId: creds.TunnelID,
    secret: Buffer.from(creds.TunnelSecret, 'base64'),
    dial: createDialer(f.protocol, edge, log, f['edge-bind-address']),
    handler,
    log,
    version: clientVersion(o.version),
    haConnections: f['ha-connections'],
    maxRetries: f.retries,
    onControlMessage: (m) => {
      if (m.type === 'routes') offramp.setRoutes(m.routes);
    },
  });
  const metrics = await startMetricsServer(o.flags.metrics, createRegistry('oxy_connector'), () => ({
    readyConnections: connector.readyConnections,
    connectorId: connector.connectorId,
  }));
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
    { tunnelID: creds.TunnelID, connectorID: connector.connectorId, edge: `${edge.host}:${edge.port}`, protocol: f.protocol, ...(f.label ? { label: f.label } : {}) },
    'Starting tunnel',
  );
  log.info({ address: `${metrics.address.address}:${metrics.address.port}` }, 'Starting metrics server on /metrics');
  connector.start();
  return {
    connector,
    offramp,
    metrics,
    origins,
    stop: async (graceMs = parseDuration(o.flags['grace-period'], '--grace-period')) => {
      await connector.stop(graceMs);
      await Promise.all([metrics.close(), origins.close()]);
    },
  };
}

