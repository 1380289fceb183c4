/**
 * Starting a connector from what `tunnel run` (or the quick tunnel) resolved: credentials,
 * edge and trust, ingress rules and dialer; then the supervisor and its metrics server.
 */
import type { Logger } from '../observe/log.js';
import { createRegistry, startMetricsServer, type MetricsServer } from '../observe/metrics.js';
import { parseDuration } from './duration.js';
import { OriginProxy } from './origin.js';
import { StreamHandler } from './stream-handler.js';
import { Connector } from './supervisor.js';
import { PrivateOfframp } from './private.js';
import { DEFAULT_WARP_ROUTING } from './config.js';
import { buildIngress, clientVersion, createDialer, resolveCredentials, resolveEdge, type CredentialSources, type ProtocolChoice } from './run.js';

export interface ConnectorRunFlags {
  protocol: ProtocolChoice;
  edge?: string;
  'edge-ca'?: string;
  url?: string;
  'hello-world'?: boolean;
  'ha-connections': number;
  'grace-period': string;
  metrics: string;
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
  const { creds, caPin } = resolveCredentials(o);
  const edge = resolveEdge(o.home, creds, { edge: o.flags.edge, edgeCa: o.flags['edge-ca'], caPin });
  const ingress = buildIngress({ config: o.config, url: o.flags.url, helloWorld: o.flags['hello-world'] });
  const origins = new OriginProxy(ingress, log);
  await origins.start();
  const offramp = new PrivateOfframp(o.config?.warpRouting ?? DEFAULT_WARP_ROUTING, log);
  const handler = new StreamHandler(origins, log, { tcp: offramp.handleTcp, udp: offramp.handleUdp, 'ip-packets': offramp.handleIcmp });
  const connector = new Connector({
    tunnelId: creds.TunnelID,
    secret: Buffer.from(creds.TunnelSecret, 'base64'),
    dial: createDialer(o.flags.protocol, edge, log),
    handler,
    log,
    version: clientVersion(o.version),
    haConnections: o.flags['ha-connections'],
    onControlMessage: (m) => {
      if (m.type === 'routes') offramp.setRoutes(m.routes);
    },
  });
  const metrics = await startMetricsServer(o.flags.metrics, createRegistry('oxy_connector'), () => ({
    readyConnections: connector.readyConnections,
    connectorId: connector.connectorId,
  }));
  log.info({ tunnelID: creds.TunnelID, connectorID: connector.connectorId, edge: `${edge.host}:${edge.port}`, protocol: o.flags.protocol }, 'Starting tunnel');
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

