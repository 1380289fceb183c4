/**
 * Egress to private networks through tunnels: the route for (vnet, destination IP) names
 * the tunnel; a `tcp` (or `udp`) stream to a connector of that tunnel carries the flow,
 * and the connector dials the destination. Used by the IP path (upgraded TCP flows) and by
 * the HTTP CONNECT on-ramp.
 */
import { joinHostPort } from '../../core/address.js';
import { OxyError } from '../../core/errors.js';
import { formatIp, parseIp } from '../../core/cidr.js';
import type { DetailedRoute } from '../../store/index.js';
import { readStreamHeader, ResponseStatus, writeRequestHeader, type Metadata } from '../protocol/stream-header.js';
import { encodeDatagramRecord } from '../protocol/datagram.js';
import { FlowDatagrams, type FlowDatagramCounters } from '../protocol/flow-datagrams.js';
import type { EngineUdpAssociation } from '../hooks/types.js';
import type { TunnelConnection, TunnelStream } from '../transport/types.js';
import type { LiveConnection, TunnelRegistry } from './registry.js';
import type { StoreView } from './store-view.js';

export class PrivateEgress {
  /** Flows refused because the route's tunnel had no live connector. */
  noConnector = 0;
  readonly #udpDatagrams = new FlowDatagrams();

  /** UDP payloads sent toward connectors: as datagrams, carried on streams, dropped. */
  get udpCounters(): FlowDatagramCounters {
    return this.#udpDatagrams.counters;
  }

  constructor(
    private readonly view: StoreView,
    private readonly registry: TunnelRegistry,
  ) {}

  /** The route that carries `ip` in `vnetId`, if any. */
  route(vnetId: string, ip: string | Uint8Array): DetailedRoute | undefined {
    return this.view.routes.lookup(vnetId, ip);
  }

  /** Whether a flow to `ip` in `vnetId` can go anywhere right now (route and a live connector). */
  reachable(vnetId: string, ip: string | Uint8Array): DetailedRoute | undefined {
    const route = this.route(vnetId, ip);
    return route && this.registry.pick(route.tunnelId) ? route : undefined;
  }

  /** The connection a new flow to `ip` (bytes) in `vnetId` would take now, if any. */
  connectionFor(vnetId: string, ip: Uint8Array): LiveConnection | undefined {
    const route = this.route(vnetId, ip);
    return route && this.registry.pick(route.tunnelId);
  }

  /**
   * Opens a stream to `ip:port` through the tunnel that serves it in `vnetId`; resolves once
   * the connector has connected. Rejects with OXY_ERR_NO_ROUTE, OXY_ERR_NO_CONNECTOR or
   * OXY_ERR_DIAL_FAILED (the connector's reason in the message). `opened` gets the stream as
   * soon as its request header is written, before the answer: what it writes is payload that
   * the connector holds until its dial is done (the wire allows payload before the answer).
   */
  async open(
    kind: 'tcp' | 'udp' | 'ip-packets',
    vnetId: string,
    ip: string | Uint8Array,
    port: number,
    metadata: Metadata | ((conn: TunnelConnection) => Metadata) = [],
    opened?: (stream: TunnelStream) => void,
  ): Promise<{ stream: TunnelStream; route: DetailedRoute; conn: TunnelConnection }> {
    // The IP path has the address as bytes already: no parse per flow.
    const bytes = typeof ip === 'string' ? parseIp(ip).bytes : ip;
    const address = formatIp(bytes);
    const route = this.route(vnetId, bytes);
    if (!route) throw new OxyError('OXY_ERR_NO_ROUTE', `No route matches the IP ${address} in virtual network ${vnetId}`);
    const live = this.registry.pick(route.tunnelId);
    if (!live) {
      this.noConnector++;
      throw new OxyError('OXY_ERR_NO_CONNECTOR', `The tunnel ${route.tunnelName} serving ${route.network} has no connector connected`);
    }
    const stream = await live.conn.openStream();
    const extra = typeof metadata === 'function' ? metadata(live.conn) : metadata;
    writeRequestHeader(stream, { kind, destination: joinHostPort(address, port), metadata: [['Vnet', vnetId], ...extra] });
    opened?.(stream);
    const answer = await readStreamHeader(stream, { expect: 'response', timeoutMs: 60_000 }).catch((err: Error) => {
      stream.destroy();
      throw new OxyError('OXY_ERR_DIAL_FAILED', `Tunnel ${route.tunnelName} did not answer for ${joinHostPort(address, port)}: ${err.message}`, { cause: err });
    });
    if (answer.status !== ResponseStatus.OK) {
      stream.destroy();
      throw new OxyError('OXY_ERR_DIAL_FAILED', `Tunnel ${route.tunnelName} could not reach ${joinHostPort(address, port)}: ${answer.message}`);
    }
    return { stream, route, conn: live.conn };
  }

  /**
   * A UDP association with `ip:port` through the tunnel that serves it in `vnetId`. Over
   * QUIC the payloads ride DATAGRAM frames tagged with a flow id (lossy, like UDP) and the
   * stream only frames the flow's life; over HTTP/2 they are records on the stream.
   */
  async openUdp(vnetId: string, ip: string, port: number, metadata: Metadata = []): Promise<{ assoc: EngineUdpAssociation; route: DetailedRoute }> {
    const flowId = this.#udpDatagrams.nextId();
    // A FlowId asks the connector for DATAGRAM frames: only where this side reads them (not
    // through a peer edge, whose link carries none).
    const withDatagrams = (conn: TunnelConnection) => conn.supportsDatagrams && !conn.datagramsReliable;
    const { stream, route, conn } = await this.open(
      'udp',
      vnetId,
      ip,
      port,
      (c): Metadata => (withDatagrams(c) ? [...metadata, ['FlowId', String(flowId)]] : metadata),
    );
    const datagrams = withDatagrams(conn);
    const closed: (() => void)[] = [];
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      if (datagrams) this.#udpDatagrams.detach(conn, flowId);
      for (const fn of closed.splice(0)) fn();
    };
    stream.on('error', end);
    stream.on('end', end);
    stream.once('close', end);
    const flowDatagrams = this.#udpDatagrams;
    const assoc: EngineUdpAssociation = {
      send: datagrams ? (payload) => flowDatagrams.send(conn, stream, flowId, payload) : (payload) => void stream.write(encodeDatagramRecord(payload)),
      onMessage(receive) {
        // Over QUIC the stream carries the payloads too large for a DATAGRAM frame.
        if (datagrams) flowDatagrams.attach(conn, flowId, receive);
        FlowDatagrams.readStream(stream, receive);
      },
      close: () => stream.end(),
      onClose: (fn) => void (ended ? fn() : closed.push(fn)),
    };
    return { assoc, route };
  }
}
