/**
 * The connector's off-ramp to private networks (warp-routing): `tcp` and `udp` streams
 * whose destination is an IP inside a route this tunnel serves, in the stream's vnet. The
 * edge pushes those routes over the control stream; anything else is refused and logged.
 */
import { createSocket } from 'node:dgram';
import { isIP, type Socket } from 'node:net';
import { getSystemErrorName } from 'node:util';
import { addressBytes } from '../../core/address.js';
import { OxyError } from '../../core/errors.js';
import { RouteTable } from '../../core/route-table.js';
import type { Logger } from '../observe/log.js';
import { DatagramRecordParser, encodeDatagramRecord } from '../protocol/datagram.js';
import { FlowDatagrams, type FlowDatagramCounters } from '../protocol/flow-datagrams.js';
import { metaGet, ResponseStatus, writeResponseHeader, type StreamRequestHeader } from '../protocol/stream-header.js';
import type { NativeDialer, TunnelConnection, TunnelStream } from '../transport/types.js';
import type { WarpRouting } from './config.js';
import { dialTcp } from './origin.js';
import { PktinfoUdpSocket } from '../native/index.js';
import { pumpFlow } from '../transport/flow-pump.js';
import { coalesceWrites } from '../util/coalesce.js';
import { bridge } from './stream-handler.js';
import { FLOW_UNSENT } from '../util/pump.js';
import { PUMP_FLOWS, TcpFlowServer, type PrivateDestination } from './tcp-flows.js';

export function splitDestination(destination: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(destination);
  if (!m) return undefined;
  const host = m[1] ?? m[2];
  const port = Number(m[3]);
  return isIP(host) && port >= 0 && port < 65536 ? { host, port } : undefined;
}

/** OXY_NATIVE_DIAL=0: a pumped flow's socket is dialled by Node's net, as before (for A/B runs). */
const NATIVE_DIAL = process.env.OXY_NATIVE_DIAL !== '0';
/**
 * With NATIVE_DIAL, an OPEN whose bytes were admitted before (this connector's routes unchanged
 * since) is dialled by the addon as it reads it, before the OPEN's JS and this turn's ACKs
 * (admitOpen: NativeDialer.admitOpen); OXY_FLOW_DIAL_AT_OPEN=0: every dial from JS, after its check.
 */
const DIAL_AT_OPEN = process.env.OXY_FLOW_DIAL_AT_OPEN !== '0';

/** A native dial waiting for its connect (PrivateOfframp's sweep fails it after connectTimeoutMs). */
interface DialWait {
  at: number;
  token: number;
  dialer: NativeDialer;
  dest: PrivateDestination;
  done: (token: number, err?: Error) => void;
}

/** A native dial's failure as Node's net reports it (`connect ECONNREFUSED host:port`). */
function dialFailed(dest: PrivateDestination, done: (token: number, err?: Error) => void, errno: number): void {
  const code = getSystemErrorName(-errno);
  done(
    -1,
    Object.assign(new Error(`connect ${code} ${dest.host}:${dest.port}`), { code, errno: -errno, syscall: 'connect', address: dest.host, port: dest.port }),
  );
}

export class PrivateOfframp {
  #routes = new RouteTable<{ id: string; vnetId: string; network: string; tunnelId: string }>([]);
  #active = 0;
  refused = 0;

  constructor(
    private readonly warp: WarpRouting,
    private readonly log: Logger,
    /** Source addresses of ICMP echo requests (cloudflared's --icmpv4-src / --icmpv6-src). */
    private readonly icmpSource: { 4?: string; 6?: string } = {},
  ) {}

  #routesKnown = false;
  #routesArrived: (() => void)[] = [];

  /**
   * What the addon may dial by itself (admitOpen) holds while this reads what it read when it
   * was admitted: one more whenever the routes change (shared with the addon, read per OPEN).
   */
  readonly #admitEpoch = new Int32Array(1);

  /** The routes the edge says this tunnel serves. */
  setRoutes(routes: { vnetId: string; network: string }[]): void {
    this.#admitEpoch[0]++;
    this.#routes = new RouteTable(routes.map((r, i) => ({ id: String(i), vnetId: r.vnetId, network: r.network, tunnelId: '' })));
    this.#routesKnown = true;
    for (const resolve of this.#routesArrived.splice(0)) resolve();
    this.log.debug({ routes: routes.length }, 'Updated the private routes this tunnel serves');
  }

  /**
   * Over QUIC the control stream and a flow's stream are not ordered: the first flow can
   * arrive before the edge's routes do. Wait for them (briefly) rather than refuse it.
   */
  async #routesReady(): Promise<void> {
    if (this.#routesKnown) return;
    await new Promise<void>((resolve) => {
      this.#routesArrived.push(resolve);
      setTimeout(resolve, 2000).unref();
    });
  }

  /** Whether a flow may go where `header` says: its destination, or the refusal's status and reason. */
  async check(header: StreamRequestHeader): Promise<PrivateDestination | { status: number; why: string }> {
    await this.#routesReady();
    return this.checkNow(header)!;
  }

  /**
   * Destinations parsed, by their text (host, port and address bytes, or null: not IP:PORT): the
   * flows of a vnet go to a few hosts. Bounded: texts up to 64 characters (an IPv6 IP:PORT is at
   * most 47), cleared when full.
   */
  readonly #dests = new Map<string, (PrivateDestination & { addr: Uint8Array }) | null>();

  #parsedDestination(text: string): (PrivateDestination & { addr: Uint8Array }) | null | undefined {
    let parsed = this.#dests.get(text);
    if (parsed !== undefined) return parsed;
    const dest = splitDestination(text);
    // Parsed once here for the route and the dial (each parse of the text cost ~3 % of the
    // connector's main thread per new connection).
    const addr = dest && addressBytes(dest.host);
    parsed = dest && addr ? { host: dest.host, port: dest.port, addr } : dest ? undefined : null;
    if (parsed === undefined || text.length > 64) return parsed; // IP:PORT whose address does not parse, or long: not kept
    if (this.#dests.size >= 1024) this.#dests.clear();
    this.#dests.set(text, parsed);
    return parsed;
  }

  /** check() without waiting: undefined until the edge's routes arrived (then call check()). */
  checkNow(header: StreamRequestHeader): PrivateDestination | { status: number; why: string } | undefined {
    if (!this.#routesKnown) return undefined;
    const parsed = this.#parsedDestination(header.destination);
    const vnet = metaGet(header.metadata, 'Vnet') ?? '';
    const refuse = (status: number, why: string) => {
      this.refused++;
      this.log.warn({ dest: header.destination, vnet, kind: header.kind }, `Refused private flow: ${why}`);
      return { status, why };
    };
    if (!this.warp.enabled) return refuse(ResponseStatus.FORBIDDEN, 'warp-routing is disabled on this connector');
    if (parsed === null) return refuse(ResponseStatus.BAD_REQUEST, `${header.destination} is not IP:PORT`);
    if (!parsed || !this.#routes.lookup(vnet, parsed.addr)) {
      return refuse(ResponseStatus.FORBIDDEN, `${parsed?.host ?? splitDestination(header.destination)?.host} is not inside a route this tunnel serves`);
    }
    if (this.warp.maxActiveFlows > 0 && this.#active >= this.warp.maxActiveFlows) {
      return refuse(ResponseStatus.FORBIDDEN, `too many active flows (maxActiveFlows ${this.warp.maxActiveFlows})`);
    }
    return parsed;
  }

  async #admit(header: StreamRequestHeader, stream: TunnelStream): Promise<{ host: string; port: number } | undefined> {
    const verdict = await this.check(header);
    if ('host' in verdict) return verdict;
    writeResponseHeader(stream, { status: verdict.status, message: verdict.why, metadata: [] });
    stream.end();
    return undefined;
  }

  /** Dials a private TCP destination with this connector's warp-routing settings. */
  dial(dest: { host: string; port: number }): Promise<Socket> {
    return dialTcp(dest.host, dest.port, this.warp.connectTimeoutMs, this.warp.tcpKeepAliveMs);
  }

  /**
   * As dial(), by the stream's transport (no Node socket: its pump takes the socket): `done` gets
   * the dial's token, or fails as dial() does (Node's `connect ECONNREFUSED host:port`, the
   * timeout's OXY_ERR_ORIGIN_TIMEOUT), once. False (and no call) where the transport cannot dial.
   * A callback, not a promise: per new private connection (a promise and its turn cost more).
   * `started` gets the token at once, while the connect is under way (a pump may take it then).
   */
  dialNative(stream: TunnelStream, dest: PrivateDestination, done: (token: number, err?: Error) => void, started?: (token: number) => void): boolean {
    const dialer = NATIVE_DIAL ? stream.dialer : undefined;
    const addr = dialer && (dest.addr ?? addressBytes(dest.host));
    if (!dialer || !addr) return false;
    const waiting: DialWait = { at: performance.now(), token: -1, dialer, dest, done };
    this.#waitDial(waiting);
    const token = dialer.dial(addr, dest.port, this.warp.tcpKeepAliveMs, (errno) => this.#dialDone(waiting, errno));
    waiting.token = token;
    if (token < 0) {
      this.#dialing.delete(waiting);
      dialFailed(dest, done, -token);
    } else started?.(token);
    return true;
  }

  /**
   * Where the addon may dial an OPEN of these bytes itself as it reads it (DIAL_AT_OPEN): `dest`
   * is what check() made of them, and nothing but the routes (the epoch) can change that — not
   * with maxActiveFlows, whose count check() reads per flow.
   */
  admitOpen(stream: TunnelStream, payload: Buffer, dest: PrivateDestination): void {
    if (!DIAL_AT_OPEN || !NATIVE_DIAL || !this.warp.enabled || this.warp.maxActiveFlows > 0 || !dest.addr) return;
    stream.dialer?.admitOpen?.(payload, dest.addr, dest.port, this.warp.tcpKeepAliveMs, this.#admitEpoch);
  }

  /** dialNative() for a dial the addon made as it read the OPEN (admitOpen): false where the transport cannot take it. */
  adoptDial(
    stream: TunnelStream,
    dest: PrivateDestination,
    token: number,
    done: (token: number, err?: Error) => void,
    started?: (token: number) => void,
  ): boolean {
    const dialer = stream.dialer;
    if (!dialer?.adopt) return false;
    const waiting: DialWait = { at: performance.now(), token, dialer, dest, done };
    this.#waitDial(waiting);
    dialer.adopt(token, (errno) => this.#dialDone(waiting, errno));
    started?.(token);
    return true;
  }

  #dialDone(waiting: DialWait, errno: number): void {
    // Expired by the sweep meanwhile: it closed the dial and failed the flow.
    if (!this.#dialing.delete(waiting)) return;
    if (errno === 0) return waiting.done(waiting.token);
    waiting.dialer.close(waiting.token);
    dialFailed(waiting.dest, waiting.done, errno);
  }

  /**
   * Native dials waiting for their connect: one sweep every eighth of connectTimeoutMs fails those
   * older than it (they fail between 1 and 1.125 times it), not a timer each — a setTimeout and
   * its clearTimeout per dial cost ~2 % of the connector's main thread per new private connection.
   */
  readonly #dialing = new Set<DialWait>();
  #dialSweep: NodeJS.Timeout | undefined;

  #waitDial(waiting: DialWait): void {
    this.#dialing.add(waiting);
    if (this.#dialSweep) return;
    const timeout = this.warp.connectTimeoutMs;
    this.#dialSweep = setInterval(
      () => {
        const now = performance.now();
        for (const w of this.#dialing) {
          if (now - w.at < timeout) continue;
          this.#dialing.delete(w);
          w.dialer.close(w.token);
          w.done(-1, new OxyError('OXY_ERR_ORIGIN_TIMEOUT', `dial tcp ${w.dest.host}:${w.dest.port}: i/o timeout after ${timeout} ms`));
        }
        if (this.#dialing.size === 0) {
          clearInterval(this.#dialSweep);
          this.#dialSweep = undefined;
        }
      },
      Math.max(10, timeout / 8),
    ).unref();
  }

  /** A flow holds one of maxActiveFlows from its admission until `flowEnded()`. */
  flowStarted(): void {
    this.#active++;
  }

  flowEnded(): void {
    this.#active--;
  }

  /** `tcp-flows` streams (feature tcp-flows/1): private TCP flows one after another on one stream. */
  readonly handleTcpFlows = (_header: StreamRequestHeader, stream: TunnelStream): Promise<void> => new TcpFlowServer(stream, this).done;

  readonly handleTcp = async (header: StreamRequestHeader, stream: TunnelStream): Promise<void> => {
    const dest = await this.#admit(header, stream);
    if (!dest) return;
    this.#active++;
    try {
      const socket = await this.dial(dest).catch((err: Error) => err);
      if (socket instanceof Error) {
        writeResponseHeader(stream, { status: ResponseStatus.DIAL_FAILED, message: socket.message, metadata: [] });
        stream.end();
        return;
      }
      writeResponseHeader(stream, { status: ResponseStatus.OK, message: '', metadata: [] });
      // Called in the same turn as the dial's 'connect': the socket has read nothing yet.
      const pumped = PUMP_FLOWS ? pumpFlow(stream, socket) : undefined;
      if (pumped) return await pumped.done;
      coalesceWrites(stream, socket);
      // A cut flow (the stream failed) resets the host's connection, as the host's reset does the stream.
      await bridge(stream, socket, { unsent: FLOW_UNSENT, reset: true });
    } finally {
      this.#active--;
    }
  };

  #icmp = new Map<4 | 6, PktinfoUdpSocket>();
  readonly #udpDatagrams = new FlowDatagrams();

  /** UDP payloads sent toward the edge: as datagrams, carried on streams, dropped. */
  get udpCounters(): FlowDatagramCounters {
    return this.#udpDatagrams.counters;
  }
  /** Echo flows waiting for replies: `${host}|${identifier}` → their stream. */
  #echoes = new Map<string, TunnelStream>();

  /**
   * ICMP echo (ping) to a private host: the stream carries ICMP messages (no IP header) as
   * length-prefixed datagrams both ways; requests go out of a raw ICMP socket (CAP_NET_RAW)
   * with the device's identifier and sequence, replies with that identifier come back.
   */
  readonly handleIcmp = async (header: StreamRequestHeader, stream: TunnelStream): Promise<void> => {
    const dest = await this.#admit(header, stream);
    if (!dest) return;
    const family = isIP(dest.host) === 6 ? 6 : 4;
    let socket: PktinfoUdpSocket;
    try {
      socket = this.#icmpSocket(family);
    } catch (err) {
      writeResponseHeader(stream, { status: ResponseStatus.DIAL_FAILED, message: `ICMP needs a raw socket: ${(err as Error).message}`, metadata: [] });
      stream.end();
      return;
    }
    writeResponseHeader(stream, { status: ResponseStatus.OK, message: '', metadata: [] });
    this.#active++;
    const keys = new Set<string>();
    const parser = new DatagramRecordParser();
    stream.on('data', (chunk: Buffer) => {
      for (const message of parser.push(chunk)) {
        // Only echo requests leave: type 8 (ICMP) / 128 (ICMPv6).
        if (message.length < 8 || message[0] !== (family === 4 ? 8 : 128)) continue;
        const key = `${dest.host}|${message.readUInt16BE(4)}`;
        keys.add(key);
        this.#echoes.set(key, stream);
        try {
          socket.send(message, 0, dest.host);
        } catch (err) {
          // No path to the host from here (ENETUNREACH …): the ping goes unanswered, as it would.
          this.log.debug({ err, dest: dest.host }, 'ICMP echo not sent');
        }
      }
    });
    await new Promise<void>((resolve) => {
      stream.once('end', resolve);
      stream.once('close', resolve);
      stream.once('error', resolve);
    });
    for (const key of keys) if (this.#echoes.get(key) === stream) this.#echoes.delete(key);
    this.#active--;
    stream.end();
  };

  #icmpSocket(family: 4 | 6): PktinfoUdpSocket {
    let socket = this.#icmp.get(family);
    if (socket) return socket;
    socket = PktinfoUdpSocket.bind({
      address: this.icmpSource[family] ?? (family === 4 ? '0.0.0.0' : '::'),
      ipv6Only: true,
      rawProtocol: family === 4 ? 1 : 58,
    });
    socket.unref();
    socket.on('batch', (batch) => {
      for (let i = 0; i < batch.count; i++) {
        const data = batch.payload(i);
        // IPv4 raw sockets deliver the IP header; ICMPv6 ones do not.
        const icmp = family === 4 ? data.subarray((data[0] & 0x0f) * 4) : data;
        if (icmp.length < 8 || icmp[0] !== (family === 4 ? 0 : 129)) continue;
        const stream = this.#echoes.get(`${batch.sourceAddress(i)}|${icmp.readUInt16BE(4)}`);
        stream?.write(encodeDatagramRecord(icmp));
      }
    });
    socket.on('error', (err) => this.log.warn({ err }, 'ICMP socket error'));
    this.#icmp.set(family, socket);
    return socket;
  }

  /**
   * A UDP flow: one stream per flow frames its life; payloads go as QUIC DATAGRAM frames
   * tagged with the edge's flow id when the connection has them, else as records on the stream.
   */
  readonly handleUdp = async (header: StreamRequestHeader, stream: TunnelStream, conn?: TunnelConnection): Promise<void> => {
    const dest = await this.#admit(header, stream);
    if (!dest) return;
    this.#active++;
    const socket = createSocket(isIP(dest.host) === 6 ? 'udp6' : 'udp4');
    const flowId = Number(metaGet(header.metadata, 'FlowId'));
    // A send that throws (the socket closing as a datagram arrives) loses that datagram, as UDP may.
    const toOrigin = (payload: Buffer) => {
      try {
        socket.send(payload);
      } catch (err) {
        this.log.debug({ err, dest: header.destination }, 'UDP datagram not sent');
      }
    };
    const viaDatagrams = conn?.supportsDatagrams && !conn.datagramsReliable && Number.isInteger(flowId) && flowId > 0;
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        // Node hands a failed connect (ENETUNREACH, …) to this callback, not to 'error': a
        // socket taken for connected then threw ERR_SOCKET_BAD_PORT on its first send.
        (socket.connect as (port: number, host: string, cb: (err?: Error) => void) => void)(dest.port, dest.host, (err) => (err ? reject(err) : resolve()));
      });
      writeResponseHeader(stream, { status: ResponseStatus.OK, message: '', metadata: [] });
      socket.on('error', (err) => this.log.debug({ err, dest: header.destination }, 'UDP flow error'));
      if (viaDatagrams) {
        this.#udpDatagrams.attach(conn, flowId, toOrigin);
        // Payloads too large for a DATAGRAM frame go as records on the stream, both ways.
        socket.on('message', (msg) => this.#udpDatagrams.send(conn, stream, flowId, msg));
        FlowDatagrams.readStream(stream, toOrigin);
      } else {
        const parser = new DatagramRecordParser();
        socket.on('message', (msg) => stream.write(encodeDatagramRecord(msg)));
        stream.on('data', (chunk: Buffer) => {
          for (const datagram of parser.push(chunk)) toOrigin(datagram);
        });
      }
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
      if (viaDatagrams) this.#udpDatagrams.detach(conn, flowId);
      socket.close();
      this.#active--;
    }
  };
}
