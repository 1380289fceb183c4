import type { Logger } from '../engine/observe/log.js';
import { startMetricsServer, type MetricsServer } from '../engine/observe/metrics.js';
import { createRegistry } from '../engine/observe/metrics.js';
import { parseDuration } from '../engine/connector/duration.js';
import { OriginProxy } from '../engine/connector/origin.js';
import { StreamHandler } from '../engine/connector/stream-handler.js';
import { Connector } from '../engine/connector/supervisor.js';
import { buildIngress, clientVersion, createDialer, resolveCredentials, resolveEdge, type CredentialSources, type ProtocolChoice } from '../engine/connector/run.js';
import { OxyError } from '../core/errors.js';
import { shutdownSignal } from './signals.js';

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
  const handler = new StreamHandler(origins, log);
  const connector = new Connector({
    tunnelId: creds.TunnelID,
    secret: Buffer.from(creds.TunnelSecret, 'base64'),
    dial: createDialer(o.flags.protocol, edge, log),
    handler,
    log,
    version: clientVersion(o.version),
    haConnections: o.flags['ha-connections'],
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
    metrics,
    origins,
    stop: async (graceMs = parseDuration(o.flags['grace-period'], '--grace-period')) => {
      await connector.stop(graceMs);
      await Promise.all([metrics.close(), origins.close()]);
    },
  };
}

/** Runs until SIGINT/SIGTERM (graceful stop) or a fatal error such as a refused secret. */
export async function runConnectorUntilSignal(log: Logger, o: Parameters<typeof startConnector>[1]): Promise<void> {
  const graceMs = parseDuration(o.flags['grace-period'], '--grace-period');
  const started = await startConnector(log, o);
  const fatal = new Promise<Error>((resolve) => started.connector.once('fatal', resolve));
  const outcome = await Promise.race([shutdownSignal(), fatal]);
  if (outcome instanceof Error) {
    await started.stop(0);
    throw new OxyError('OXY_ERR_TUNNEL_UNAUTHORIZED', `Tunnel could not register: ${outcome.message}`);
  }
  log.info({ signal: outcome, gracePeriod: o.flags['grace-period'] }, 'Initiating graceful shutdown due to signal');
  await started.stop(graceMs);
}
