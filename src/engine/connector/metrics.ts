/**
 * The connector's /metrics under cloudflared's names, with `oxyctl_` where cloudflared has
 * `cloudflared_` (and `oxyctl_quic_` for its `quic_`), so a dashboard built for cloudflared
 * works after one relabel rule (README: "Coming from cloudflared"). Counted where the work
 * happens: requests in the stream handler, connections in the supervisor.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { HttpResponseHead } from '../protocol/http-head.js';
import { scrapedCounter } from '../observe/metrics.js';
import type { FlowFinHolds } from '../native/index.js';

export const METRICS_NAMESPACE = 'oxyctl';

export interface ConnectorMetrics {
  requestStarted(): void;
  /** The response head the connector sends back (an error page carries Proxy-Status). */
  responded(head: HttpResponseHead): void;
  requestEnded(): void;
  connectionRegistered(connectionId: string, location: string, protocol: string): void;
  connectionClosed(connectionId: string, protocol: string): void;
  connectionFailed(protocol: string): void;
}

/** Where the UDP payloads of private flows went (the off-ramp's counters), read at scrape time. */
export function registerUdpPayloadMetrics(registry: Registry, counters: () => { datagrams: number; oversize: number; dropped: number }): void {
  scrapedCounter(
    registry,
    `${METRICS_NAMESPACE}_private_udp_payloads_total`,
    'UDP payloads of private flows sent toward the edge, by path: datagram, stream (too large for a QUIC DATAGRAM frame), dropped (the connection refused it)',
    'path',
    () => {
      const c = counters();
      return { datagram: c.datagrams, stream: c.oversize, dropped: c.dropped };
    },
  );
}

/**
 * The closing answers of private TCP flows the addon held for their host's FIN (OXY_FLOW_FIN_HOLD:
 * the answer and the flow's end then go in one packet), read at scrape time.
 */
export function registerFinHoldMetrics(registry: Registry, read: () => FlowFinHolds): void {
  scrapedCounter(
    registry,
    `${METRICS_NAMESPACE}_private_tcp_fin_holds_total`,
    "Private TCP flows' closing answers held for the host's FIN, by event: held, then let go by the FIN (fin), at the hold's end (deadline) or by anything else (other: more bytes, an error, the flow closed); wake counts the hold timer's wake-ups",
    'event',
    () => {
      const c = read();
      return { held: c.held, fin: c.fin, deadline: c.deadline, other: c.other, wake: c.wakes };
    },
  );
  new Counter({
    name: `${METRICS_NAMESPACE}_private_tcp_fin_hold_seconds_total`,
    help: "Time private TCP flows' closing answers waited for the host's FIN, summed",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read().heldUs / 1e6);
    },
  });
}

export function createConnectorMetrics(registry: Registry, readyConnections: () => number): ConnectorMetrics {
  const t = `${METRICS_NAMESPACE}_tunnel`;
  const q = `${METRICS_NAMESPACE}_quic_client`;
  const registers = [registry];
  // Per-request figures are plain numbers, read at scrape time: counting costs a request nothing more.
  let total = 0;
  let inFlight = 0;
  let peak = 0;
  let failed = 0;
  const codes = new Map<number, number>();
  new Counter({
    name: `${t}_total_requests`,
    help: 'Amount of requests proxied through all the tunnels',
    registers,
    collect() {
      this.reset();
      this.inc(total);
    },
  });
  new Gauge({
    name: `${t}_concurrent_requests_per_tunnel`,
    help: 'Concurrent requests proxied through each tunnel',
    registers,
    collect() {
      this.set(inFlight);
    },
  });
  new Gauge({
    name: `${t}_max_concurrent_requests_per_tunnel`,
    help: 'Largest number of concurrent requests proxied through each tunnel so far',
    registers,
    collect() {
      this.set(peak);
    },
  });
  new Counter({
    name: `${t}_response_by_code`,
    help: 'Count of responses by HTTP status code',
    labelNames: ['status_code'],
    registers,
    collect() {
      this.reset();
      for (const [code, n] of codes) this.inc({ status_code: String(code) }, n);
    },
  });
  new Counter({
    name: `${t}_request_errors`,
    help: 'Count of error proxying to origin',
    registers,
    collect() {
      this.reset();
      this.inc(failed);
    },
  });
  new Gauge({
    name: `${t}_ha_connections`,
    help: 'Number of active ha connections',
    registers,
    collect() {
      this.set(readyConnections());
    },
  });
  const locations = new Gauge({
    name: `${t}_server_locations`,
    help: 'Where each tunnel is connected to. 1 means current location, 0 means previous locations.',
    labelNames: ['connection_id', 'edge_location'],
    registers,
  });
  const registerSuccess = new Counter({
    name: `${t}_tunnel_register_success`,
    help: 'Count of successful tunnel registrations',
    labelNames: ['rpcName'],
    registers,
  });
  const registerFail = new Counter({
    name: `${t}_tunnel_register_fail`,
    help: 'Count of failed tunnel registrations (dial or registration)',
    labelNames: ['error', 'rpcName'],
    registers,
  });
  const events = new Counter({
    name: `${t}_connection_events`,
    help: 'Tunnel connection events per protocol (registered, closed, failed)',
    labelNames: ['protocol', 'event'],
    registers,
  });
  const quicTotal = new Counter({ name: `${q}_total_connections`, help: 'Number of QUIC connections initiated', registers });
  const quicClosed = new Counter({ name: `${q}_closed_connections`, help: 'Number of QUIC connections closed', registers });
  const locationOf = new Map<string, string>();
  return {
    requestStarted() {
      total++;
      if (++inFlight > peak) peak = inFlight;
    },
    responded(head) {
      codes.set(head.status, (codes.get(head.status) ?? 0) + 1);
      if (head.headers.length > 0 && head.headers.some(([k]) => k === 'proxy-status')) failed++;
    },
    requestEnded() {
      inFlight--;
    },
    connectionRegistered(connectionId, location, protocol) {
      locationOf.set(connectionId, location);
      locations.labels(connectionId, location).set(1);
      registerSuccess.labels('registerConnection').inc();
      events.labels(protocol, 'registered').inc();
      if (protocol === 'quic') quicTotal.inc();
    },
    connectionClosed(connectionId, protocol) {
      const location = locationOf.get(connectionId);
      if (location !== undefined) locations.labels(connectionId, location).set(0);
      events.labels(protocol, 'closed').inc();
      if (protocol === 'quic') quicClosed.inc();
    },
    connectionFailed(protocol) {
      registerFail.labels('dial_or_register', 'registerConnection').inc();
      events.labels(protocol, 'failed').inc();
    },
  };
}
