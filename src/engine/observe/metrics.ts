/**
 * The metrics listener both the edge and the connector run: Prometheus `/metrics`,
 * `/ready` (cloudflared's readiness document) and `/healthcheck`.
 */
import { splitHostPort } from '../../core/address.js';
import type { Server } from 'node:http';
import { createHttpServer, type HttpTimeouts } from '../util/http-server.js';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, Counter, Registry } from 'prom-client';

/**
 * How often the event-loop delay histogram (`*_nodejs_eventloop_lag_p99_seconds` and its
 * siblings) samples, in ms. prom-client's default, 10, is a timer that wakes an idle process 100
 * times a second; on a busy 2-core VM each wake-up costs ~100 µs, 1–1.5 % of a core per process,
 * paid again by every edge worker. A stall longer than this is still always seen.
 */
const EVENT_LOOP_SAMPLE_MS = Number(process.env.OXY_EVENT_LOOP_SAMPLE_MS) || 100;

/**
 * A counter whose series are read at scrape time, one per value of `label`: `read` returns the
 * totals the data path keeps as plain numbers (counting costs it nothing more).
 */
export function scrapedCounter(registry: Registry, name: string, help: string, label: string, read: () => Record<string, number>): Counter {
  return new Counter({
    name,
    help,
    labelNames: [label],
    registers: [registry],
    collect() {
      this.reset();
      for (const [value, n] of Object.entries(read())) this.inc({ [label]: value }, n);
    },
  });
}

export function createRegistry(prefix: string): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: `${prefix}_`, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  return registry;
}

export interface Readiness {
  readyConnections: number;
  connectorId?: string;
}

export interface MetricsServer {
  server: Server;
  address: AddressInfo;
  close(): Promise<void>;
}

/** Listens on HOST:PORT (port 0 picks one); `ready()` decides 200 or 503. */
/**
 * cloudflared's known metrics addresses: with the default address (any port: `localhost:0`,
 * `127.0.0.1:0`) the connector takes the first free one, else a random port, so `tunnel diag`
 * finds a local connector without --metrics.
 */
export const KNOWN_METRICS_ADDRESSES = ['127.0.0.1:20241', '127.0.0.1:20242', '127.0.0.1:20243', '127.0.0.1:20244', '127.0.0.1:20245'];

/** Where a connector's metrics server tries to listen, in order. */
export const metricsAddresses = (listen: string): string[] => (/^(localhost|127\.0\.0\.1):0$/.test(listen) ? [...KNOWN_METRICS_ADDRESSES, listen] : [listen]);

export async function startMetricsServer(
  /** HOST:PORT, or several tried in order (the first that binds wins). */
  listen: string | string[],
  /** A registry, or anything that renders one (the primary of `edge run --workers`: its workers' metrics summed). */
  registry: Pick<Registry, 'metrics' | 'contentType'>,
  ready: () => Readiness,
  /** Further JSON documents by path (the connector's /diag/* for `tunnel diag`). */
  documents: Record<string, () => unknown> = {},
  /** Client timeouts (default HTTP_TIMEOUTS). */
  timeouts?: Partial<HttpTimeouts>,
): Promise<MetricsServer> {
  const server = createHttpServer(async (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const document = Object.hasOwn(documents, path) ? documents[path] : undefined;
    if (document) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(await document()));
    } else if (path === '/metrics') {
      const text = await registry.metrics().catch(() => undefined);
      res.writeHead(text === undefined ? 500 : 200, { 'content-type': registry.contentType });
      res.end(text ?? '');
    } else if (path === '/ready') {
      const r = ready();
      const status = r.readyConnections > 0 ? 200 : 503;
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status, readyConnections: r.readyConnections, connectorId: r.connectorId }));
    } else if (path === '/healthcheck') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('OK\n');
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('404 page not found\n');
    }
  }, timeouts);
  const candidates = typeof listen === 'string' ? [listen] : listen;
  for (const [i, address] of candidates.entries()) {
    const { host, port } = splitHostPort(address);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      break;
    } catch (err) {
      if (i === candidates.length - 1) throw err;
    }
  }
  return {
    server,
    address: server.address() as AddressInfo,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
