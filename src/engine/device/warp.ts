/**
 * The device on-ramp (`oxyctl warp connect`), WARP's role in the Oxy posts: a TUN on the
 * device takes the traffic for the vnet's private routes, and every packet goes to the
 * edge as one datagram of a connected IP tunnel (SEQPACKET), after a first datagram that
 * names the tenant and the vnet. Replies come back the same way into the TUN.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { OxyError, isErrorCode } from '../../core/errors.js';
import type { Logger } from '../observe/log.js';
import { randomUUID } from 'node:crypto';
import { closeFd, PacketRelay, SeqpacketSocket, seqpacketConnectFd, Tun } from '../native/index.js';
import { DatagramRecordParser, encodeDatagramRecord } from '../protocol/datagram.js';
import { registerConnection } from '../protocol/registration.js';
import { metaGet, readStreamHeader, ResponseStatus, writeRequestHeader } from '../protocol/stream-header.js';
import type { RoutesMessage } from '../protocol/control.js';
import type { TunnelConnection } from '../transport/types.js';

const run = promisify(execFile);

/** Where the device's packets go: the local SEQPACKET on-ramp, or a stream to a remote edge. */
export interface PacketChannel {
  send(packet: Buffer): void;
  onPacket(handler: (packet: Buffer) => void): void;
  /** Resolves when the edge ends the channel, with its reason when it gave one. */
  ended: Promise<string | void>;
  close(): void;
  /** The vnet's routes as the edge sends them (remote edges): now, and at every change. */
  onRoutes?(handler: (networks: string[]) => void): void;
}

export interface WarpOptions {
  /** The edge's SEQPACKET on-ramp (`edge run --ip-tunnel-listen`), or a ready channel. */
  seqpacketPath?: string;
  channel?: PacketChannel;
  context: { tenant: string; vnet: string; [field: string]: unknown };
  /** CIDRs routed into the TUN; empty: those of `routeFeed` (or the channel's onRoutes), kept in step. */
  routes: string[];
  /** Where the vnet's routes come from when `routes` is empty: now, and at every change. */
  routeFeed?: (handler: (networks: string[]) => void) => void;
  /** Called after a route update was applied, with the routes now steered. */
  onRoutesUpdated?: (routes: string[]) => void;
  tunName?: string;
  /** The device's address on the TUN (the source of its private traffic). */
  address?: string;
  /** Its IPv6 address on the TUN (the source of IPv6 private traffic). */
  address6?: string;
  mtu?: number;
  log: Logger;
}

export interface Warp {
  tun: string;
  /** The CIDRs routed into the TUN now. */
  readonly routes: string[];
  close(): void;
  /** Resolves when the edge closes the tunnel, with its reason when it gave one. */
  ended: Promise<string | void>;
}

/** How long a device following the edge's routes waits for the first list. */
const FIRST_ROUTES_TIMEOUT_MS = 10_000;

export const DEFAULT_WARP_ADDRESS = '100.96.0.2';
/** A unique local address (RFC 4193): IPv6 routes need a source on the TUN. */
export const DEFAULT_WARP_ADDRESS6 = 'fd00:6f78::2';
export const DEFAULT_WARP_MTU = 65000;
/** OXY_IP_PARTIAL_CSUM=0: a TUN without IFF_VNET_HDR, whose kernel verifies every checksum (A/B runs). */
const PARTIAL_CSUM = process.env.OXY_IP_PARTIAL_CSUM !== '0';
/**
 * OXY_IP_PARTIAL_SENDS=0: the TUN's kernel sums every TCP segment it sends, as before session 19
 * (otherwise, where the edge takes them, it leaves them partial: the relay's sendPartial()).
 */
const PARTIAL_SENDS = PARTIAL_CSUM && process.env.OXY_IP_PARTIAL_SENDS !== '0';
/**
 * OXY_IP_TUN_HANDOFF=0: the device relays its TUN to the edge's socket itself, as before session 20
 * (otherwise, where the edge takes it, the TUN's fd goes to the edge, which reads and writes it:
 * relayChannel). The three processes' CPU per MB fell from 2.7 to 2.0–2.2 ms, per keep-alive
 * request from a median 110.8 to 100.3 µs, per new connection by ~100 µs (docs/decisions.md).
 */
const TUN_HANDOFF = PARTIAL_CSUM && process.env.OXY_IP_TUN_HANDOFF !== '0';

/** Connects to the local on-ramp (`edge run --ip-tunnel-listen`); the fd is the caller's. */
function connectOnRamp(path: string): number {
  try {
    return seqpacketConnectFd(path);
  } catch (err) {
    throw new OxyError(
      'OXY_ERR_WARP_CONNECT',
      `Cannot reach the edge's IP tunnel on-ramp at ${path}: ${(err as Error).message}. Is 'oxyctl edge run --ip-tunnel-listen ${path}' running?`,
      { cause: err },
    );
  }
}

/** The edge takes partial TCP checksums: the TUN's kernel leaves them so (whole, as before, if the ioctl fails). */
function takePartialSends(relay: PacketRelay): void {
  try {
    relay.sendPartial();
  } catch {
    // TUNSETOFFLOAD refused: the kernel keeps summing what it sends.
  }
}

/**
 * The local on-ramp: the TUN relayed to the connected SEQPACKET socket inside the addon
 * (no JS per packet), after a first datagram that is the context. The packets never
 * pass through `send`/`onPacket`.
 *
 * An edge that takes the TUN itself (the context's tunHandoff, answered `{"tunHandoff":true}`)
 * gets its fd over the socket; once it says `{"tunTaken":true}` the relay stops and the socket
 * is only the control channel: the edge reads and writes the TUN, and its end is the edge's.
 */
export function relayChannel(tun: Tun, socketFd: number, context: object, log: Logger): PacketChannel {
  const relay = PacketRelay.attach(tun, socketFd, { first: Buffer.from(JSON.stringify(context)) });
  relay.on('error', () => undefined);
  let control: SeqpacketSocket | undefined;
  let done!: () => void;
  const ended = new Promise<string | void>((resolve) => (done = () => resolve(refusal)));
  relay.once('end', done);
  relay.once('close', done);
  // The edge refuses a context with one JSON datagram (`{"error":…}`; an IP packet never starts
  // with `{`), and answers a context's partialSends with `{"partialSends":true}` when it takes them,
  // its tunHandoff with `{"tunHandoff":true}`, and the TUN's fd with `{"tunTaken":true}` or
  // `{"tunRefused":why}` (the relay then goes on as if it had not offered it).
  let refusal: string | undefined;
  const onMessage = (data: Buffer) => {
    if (data[0] !== 0x7b) return;
    let answer: { error?: { message?: string }; partialSends?: boolean; tunHandoff?: boolean; tunTaken?: boolean; tunRefused?: string };
    try {
      answer = JSON.parse(data.toString('utf8')) as typeof answer;
    } catch {
      refusal = data.toString('utf8');
      return;
    }
    if (answer.partialSends === true && !relay.closed) takePartialSends(relay);
    if (answer.tunHandoff === true && !relay.closed) offerTun(relay, log);
    if (answer.tunTaken === true && !relay.closed) control = takeControl(relay, tun, onMessage, done);
    if (typeof answer.tunRefused === 'string') log.warn({ reason: answer.tunRefused }, 'The edge did not take the TUN: relaying it');
    if (answer.error) refusal = answer.error.message;
  };
  relay.on('message', onMessage);
  return {
    send: () => undefined,
    onPacket: () => undefined,
    ended,
    close: () => {
      relay.close();
      control?.close();
    },
  };
}

/** Passes the TUN's fd to an edge that said it takes it; the relay goes on until it says it did. */
function offerTun(relay: PacketRelay, log: Logger): void {
  try {
    if (!relay.offerTun(Buffer.from(JSON.stringify({ tun: true })))) log.warn('The on-ramp socket is full: relaying the TUN');
  } catch (err) {
    log.warn({ err }, 'Could not pass the TUN to the edge: relaying it');
  }
}

/**
 * The edge took the TUN: the relay stops and its socket is the control channel, whose end is the
 * channel's. An IP packet the edge sent before it took the TUN still goes into the TUN.
 */
function takeControl(relay: PacketRelay, tun: Tun, onMessage: (data: Buffer) => void, done: () => void): SeqpacketSocket {
  const control = SeqpacketSocket.fromFd(relay.handOver(), { maxMessageSize: 65535 + 64 });
  control.on('message', (data) => {
    if (data[0] === 0x7b) onMessage(Buffer.from(data));
    else if (data.length > 0) tun.write(data);
  });
  control.on('error', () => undefined);
  control.once('end', done);
  control.once('close', done);
  return control;
}

/**
 * A remote edge: the device registers on the tunnel transport with its enrolled identity
 * and opens one `ip-packets` stream naming its vnet; packets travel as datagram records.
 */
export async function streamChannel(conn: TunnelConnection, o: { deviceId: string; secret: Buffer; vnet: string; version: string }): Promise<PacketChannel> {
  const { control } = await registerConnection(conn, {
    tunnelId: o.deviceId,
    connectorId: randomUUID(),
    connIndex: 0,
    secret: o.secret,
    clientVersion: o.version,
    features: ['device'],
  });
  const stream = await conn.openStream();
  writeRequestHeader(stream, { kind: 'ip-packets', destination: '', metadata: [['Vnet', o.vnet]] });
  const answer = await readStreamHeader(stream, { expect: 'response', timeoutMs: 10_000 });
  if (answer.status !== ResponseStatus.OK) {
    // The edge names what was wrong (an unknown vnet: OXY_ERR_VNET_NOT_FOUND) with its code.
    const code = metaGet(answer.metadata, 'Error-Code');
    stream.destroy();
    conn.close();
    if (code && isErrorCode(code)) throw new OxyError(code, answer.message);
    throw new OxyError('OXY_ERR_WARP_CONNECT', `The edge refused the device: ${answer.message}`);
  }
  const parser = new DatagramRecordParser();
  stream.on('error', () => undefined);
  return {
    send: (packet) => void stream.write(encodeDatagramRecord(packet)),
    onPacket: (handler) =>
      void stream.on('data', (chunk: Buffer) => {
        for (const packet of parser.push(chunk)) handler(packet);
      }),
    // The stream usually ends a moment before the connection's close (and its reason) arrives.
    ended: new Promise<string | void>((resolve) => {
      void conn.closed.then((info) => resolve(info.reason || undefined));
      stream.once('close', () => setTimeout(resolve, 250).unref());
    }),
    close: () => {
      stream.destroy();
      conn.close();
    },
    onRoutes(handler) {
      const networks = (m: RoutesMessage) => m.routes.map((r) => r.network);
      control.on('message', (m) => void (m.type === 'routes' && handler(networks(m))));
      if (control.latestRoutes) handler(networks(control.latestRoutes));
    },
  };
}

export async function startWarp(o: WarpOptions): Promise<Warp> {
  const socketFd = o.channel ? undefined : connectOnRamp(o.seqpacketPath!);
  let tun: Tun;
  try {
    tun = Tun.open({
      name: o.tunName ?? 'oxywarp0',
      mtu: o.mtu ?? DEFAULT_WARP_MTU,
      txQueueLength: 5000,
      batchSize: 128,
      up: true,
      // The relay writes the edge's TCP packets as CHECKSUM_PARTIAL: this kernel does not sum them again.
      partialChecksums: PARTIAL_CSUM,
    });
  } catch (err) {
    if (socketFd !== undefined) closeFd(socketFd);
    throw err;
  }
  // partialChecksums: the edge may send TCP packets with partial checksums (the relay writes them as such).
  // partialSends: the relay may send TCP packets with partial checksums, once the edge says it takes them.
  // tunHandoff: the relay may hand the TUN's fd to the edge, once the edge says it takes it.
  const context = {
    ...o.context,
    ...(PARTIAL_CSUM ? { partialChecksums: true } : {}),
    ...(PARTIAL_SENDS ? { partialSends: true } : {}),
    ...(TUN_HANDOFF ? { tunHandoff: true } : {}),
  };
  const channel = o.channel ?? relayChannel(tun, socketFd!, context, o.log);
  const feed = o.routes.length === 0 ? (o.routeFeed ?? channel.onRoutes?.bind(channel)) : undefined;
  const ip = (...args: string[]) => run('ip', args);
  const family = (cidr: string) => (cidr.includes(':') ? ['-6'] : []);
  let routes: string[] = [];
  /** Steers exactly `next` into the TUN: adds what is new, removes what went. */
  const steer = async (next: string[]) => {
    for (const route of next.filter((r) => !routes.includes(r))) await ip(...family(route), 'route', 'replace', route, 'dev', tun.name);
    for (const route of routes.filter((r) => !next.includes(r))) await ip(...family(route), 'route', 'del', route, 'dev', tun.name).catch(() => undefined);
    routes = next;
  };
  // One subscription: the first list configures the TUN, later ones are applied in order.
  let first: Promise<string[]> | undefined;
  let configured!: () => void;
  let applying = new Promise<void>((resolve) => (configured = resolve));
  if (feed) {
    first = new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new OxyError(
              'OXY_ERR_NO_ROUTES',
              `No routes came for this virtual network within ${FIRST_ROUTES_TIMEOUT_MS / 1000} s: pass the networks with --route CIDR.`,
            ),
          ),
        FIRST_ROUTES_TIMEOUT_MS,
      );
      let initial = true;
      feed((next) => {
        if (initial) {
          initial = false;
          clearTimeout(timer);
          return resolve(next);
        }
        applying = applying.then(async () => {
          if (next.join(',') === routes.join(',')) return;
          await steer(next).catch((err: Error) => o.log.warn({ err }, 'Could not apply the new routes'));
          o.log.info({ routes: routes.join(',') }, 'Routes updated');
          o.onRoutesUpdated?.(routes);
        });
      });
    });
  }
  try {
    await ip('addr', 'add', `${o.address ?? DEFAULT_WARP_ADDRESS}/32`, 'dev', tun.name);
    // nodad: usable at once (a TUN has no neighbours); a host with IPv6 off keeps IPv4 working.
    await ip('-6', 'addr', 'add', `${o.address6 ?? DEFAULT_WARP_ADDRESS6}/128`, 'dev', tun.name, 'nodad').catch((err: Error) =>
      o.log.warn({ err }, 'No IPv6 address on the TUN: IPv6 routes will not work'),
    );
    await steer(first ? await first : o.routes);
    configured();
  } catch (err) {
    tun.close();
    channel.close();
    if (err instanceof OxyError) throw err;
    throw new OxyError('OXY_ERR_WARP_ROUTES', `Could not configure ${tun.name}: ${(err as Error).message}`, { cause: err });
  }
  if (o.channel) {
    tun.on('packets', (batch) => {
      for (let i = 0; i < batch.count; i++) channel.send(batch.packet(i));
    });
    channel.onPacket((packet) => tun.write(packet));
  }
  o.log.info({ tun: tun.name, vnet: o.context.vnet, routes: routes.join(',') }, 'Connected to the edge');
  return {
    tun: tun.name,
    get routes() {
      return routes;
    },
    ended: channel.ended,
    close: () => {
      channel.close();
      tun.close(); // removing the device removes its routes
    },
  };
}
