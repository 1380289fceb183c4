/**
 * The connector's off-ramp to private networks (warp-routing): `tcp` and `udp` streams
 * whose destination is an IP inside a route this tunnel serves, in the stream's vnet. The
 * edge pushes those routes over the control stream; anything else is refused and logged.
 */
import { createSocket } from 'node:dgram';
import { isIP } from 'node:net';
import { RouteTable } from '../../core/route-table.js';
import type { Logger } from '../observe/log.js';
import { DatagramRecordParser, encodeDatagramRecord } from '../protocol/datagram.js';
import { metaGet, ResponseStatus, writeResponseHeader, type StreamRequestHeader } from '../protocol/stream-header.js';
import type { TunnelStream } from '../transport/types.js';
import type { WarpRouting } from './config.js';
import { dialTcp } from './origin.js';
import { bridge } from './stream-handler.js';

export function splitDestination(destination: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(destination);
  if (!m) return undefined;
  const host = m[1] ?? m[2];
  const port = Number(m[3]);
  return isIP(host) && port > 0 && port < 65536 ? { host, port } : undefined;
}

export class PrivateOfframp {
  #routes = new RouteTable<{ id: string; vnetId: string; network: string; tunnelId: string }>([]);
  #active = 0;
  refused = 0;

  constructor(
    private readonly warp: WarpRouting,
    private readonly log: Logger,
  ) {}

  /** The routes the edge says this tunnel serves. */
  setRoutes(routes: { vnetId: string; network: string }[]): void {
    this.#routes = new RouteTable(routes.map((r, i) => ({ id: String(i), vnetId: r.vnetId, network: r.network, tunnelId: '' })));
    this.log.debug({ routes: routes.length }, 'Updated the private routes this tunnel serves');
  }

  #admit(header: StreamRequestHeader, stream: TunnelStream): { host: string; port: number } | undefined {
    const dest = splitDestination(header.destination);
    const vnet = metaGet(header.metadata, 'Vnet') ?? '';
    const refuse = (status: number, why: string) => {
      this.refused++;
      this.log.warn({ dest: header.destination, vnet, kind: header.kind }, `Refused private flow: ${why}`);
      writeResponseHeader(stream, { status, message: why, metadata: [] });
      stream.end();
      return undefined;
    };
    if (!this.warp.enabled) return refuse(ResponseStatus.FORBIDDEN, 'warp-routing is disabled on this connector');
    if (!dest) return refuse(ResponseStatus.BAD_REQUEST, `${header.destination} is not IP:PORT`);
    if (!this.#routes.lookup(vnet, dest.host)) return refuse(ResponseStatus.FORBIDDEN, `${dest.host} is not inside a route this tunnel serves`);
    if (this.warp.maxActiveFlows > 0 && this.#active >= this.warp.maxActiveFlows) {
      return refuse(ResponseStatus.FORBIDDEN, `too many active flows (maxActiveFlows ${this.warp.maxActiveFlows})`);
    }
    return dest;
  }

  readonly handleTcp = async (header: StreamRequestHeader, stream: TunnelStream): Promise<void> => {
    const dest = this.#admit(header, stream);
    if (!dest) return;
    this.#active++;
    try {
      const socket = await dialTcp(dest.host, dest.port, this.warp.connectTimeoutMs, this.warp.tcpKeepAliveMs).catch((err: Error) => err);
      if (socket instanceof Error) {
        writeResponseHeader(stream, { status: ResponseStatus.DIAL_FAILED, message: socket.message, metadata: [] });
        stream.end();
        return;
      }
      writeResponseHeader(stream, { status: ResponseStatus.OK, message: '', metadata: [] });
      await bridge(stream, socket);
    } finally {
      this.#active--;
    }
  };

  /** UDP over a stream: length-prefixed datagrams each way, one flow per stream. */
  readonly handleUdp = async (header: StreamRequestHeader, stream: TunnelStream): Promise<void> => {
    const dest = this.#admit(header, stream);
    if (!dest) return;
    this.#active++;
    const socket = createSocket(isIP(dest.host) === 6 ? 'udp6' : 'udp4');
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.connect(dest.port, dest.host, () => resolve());
      });
      writeResponseHeader(stream, { status: ResponseStatus.OK, message: '', metadata: [] });
      const parser = new DatagramRecordParser();
      socket.on('message', (msg) => stream.write(encodeDatagramRecord(msg)));
      socket.on('error', (err) => this.log.debug({ err, dest: header.destination }, 'UDP flow error'));
      stream.on('data', (chunk: Buffer) => {
        for (const datagram of parser.push(chunk)) socket.send(datagram);
      });
      await new Promise<void>((resolve) => {
        stream.once('end', resolve);
        stream.once('close', resolve);
        stream.once('error', resolve);
      });
      stream.end();
    } catch (err) {
      writeResponseHeader(stream, { status: ResponseStatus.DIAL_FAILED, message: (err as Error).message, metadata: [] });
      stream.end();
    } finally {
      socket.close();
      this.#active--;
    }
  };
}
