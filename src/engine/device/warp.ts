/**
 * The device on-ramp (`oxyctl warp connect`), WARP's role in the Oxy posts: a TUN on the
 * device takes the traffic for the vnet's private routes, and every packet goes to the
 * edge as one datagram of a connected IP tunnel (SEQPACKET), after a first datagram that
 * names the tenant and the vnet. Replies come back the same way into the TUN.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { OxyError } from '../../core/errors.js';
import type { Logger } from '../observe/log.js';
import { randomUUID } from 'node:crypto';
import { SeqpacketSocket, Tun } from '../native/index.js';
import { DatagramRecordParser, encodeDatagramRecord } from '../protocol/datagram.js';
import { registerConnection } from '../protocol/registration.js';
import { readStreamHeader, ResponseStatus, writeRequestHeader } from '../protocol/stream-header.js';
import type { TunnelConnection } from '../transport/types.js';

const run = promisify(execFile);

/** Where the device's packets go: the local SEQPACKET on-ramp, or a stream to a remote edge. */
export interface PacketChannel {
  send(packet: Buffer): void;
  onPacket(handler: (packet: Buffer) => void): void;
  ended: Promise<void>;
  close(): void;
}

export interface WarpOptions {
  /** The edge's SEQPACKET on-ramp (`edge run --ip-tunnel-listen`), or a ready channel. */
  seqpacketPath?: string;
  channel?: PacketChannel;
  context: { tenant: string; vnet: string; [field: string]: unknown };
  /** CIDRs routed into the TUN. */
  routes: string[];
  tunName?: string;
  /** The device's address on the TUN (the source of its private traffic). */
  address?: string;
  mtu?: number;
  log: Logger;
}

export interface Warp {
  tun: string;
  routes: string[];
  close(): void;
  /** Resolves when the edge closes the tunnel. */
  ended: Promise<void>;
}

export const DEFAULT_WARP_ADDRESS = '100.96.0.2';
export const DEFAULT_WARP_MTU = 65000;

/** The local on-ramp: a connected SEQPACKET socket whose first datagram is the context. */
export function seqpacketChannel(path: string, context: object): PacketChannel {
  let socket: SeqpacketSocket;
  try {
    socket = SeqpacketSocket.connect(path, { maxMessageSize: 65535 + 64, batchSize: 128 });
  } catch (err) {
    throw new OxyError('OXY_ERR_WARP_CONNECT', `Cannot reach the edge's IP tunnel on-ramp at ${path}: ${(err as Error).message}. Is 'oxyctl edge run --ip-tunnel-listen ${path}' running?`, { cause: err });
  }
  socket.send(Buffer.from(JSON.stringify(context)));
  socket.on('error', () => undefined);
  return {
    send: (packet) => void socket.send(packet),
    onPacket: (handler) => void socket.on('message', (packet: Buffer) => handler(packet)),
    ended: new Promise<void>((resolve) => {
      socket.once('end', resolve);
      socket.once('close', resolve);
      socket.once('error', () => resolve());
    }),
    close: () => socket.close(),
  };
}

/**
 * A remote edge: the device registers on the tunnel transport with its enrolled identity
 * and opens one `ip-packets` stream naming its vnet; packets travel as datagram records.
 */
export async function streamChannel(conn: TunnelConnection, o: { deviceId: string; secret: Buffer; vnet: string; version: string }): Promise<PacketChannel> {
  await registerConnection(conn, { tunnelId: o.deviceId, connectorId: randomUUID(), connIndex: 0, secret: o.secret, clientVersion: o.version, features: ['device'] });
  const stream = await conn.openStream();
  writeRequestHeader(stream, { kind: 'ip-packets', destination: '', metadata: [['Vnet', o.vnet]] });
  const answer = await readStreamHeader(stream, { expect: 'response', timeoutMs: 10_000 });
  if (answer.status !== ResponseStatus.OK) throw new OxyError('OXY_ERR_WARP_CONNECT', `The edge refused the device: ${answer.message}`);
  const parser = new DatagramRecordParser();
  stream.on('error', () => undefined);
  return {
    send: (packet) => void stream.write(encodeDatagramRecord(packet)),
    onPacket: (handler) =>
      void stream.on('data', (chunk: Buffer) => {
        for (const packet of parser.push(chunk)) handler(packet);
      }),
    ended: Promise.race([conn.closed.then(() => undefined), new Promise<void>((resolve) => stream.once('close', () => resolve()))]),
    close: () => {
      stream.destroy();
      conn.close();
    },
  };
}

export async function startWarp(o: WarpOptions): Promise<Warp> {
  const channel = o.channel ?? seqpacketChannel(o.seqpacketPath!, o.context);
  const tun = Tun.open({ name: o.tunName ?? 'oxywarp0', mtu: o.mtu ?? DEFAULT_WARP_MTU, txQueueLength: 5000, batchSize: 128, up: true });
  try {
    const ip = (...args: string[]) => run('ip', args);
    const v6 = (cidr: string) => cidr.includes(':');
    await ip('addr', 'add', `${o.address ?? DEFAULT_WARP_ADDRESS}/32`, 'dev', tun.name);
    for (const route of o.routes) await ip(...(v6(route) ? ['-6'] : []), 'route', 'replace', route, 'dev', tun.name);
  } catch (err) {
    tun.close();
    channel.close();
    throw new OxyError('OXY_ERR_WARP_ROUTES', `Could not configure ${tun.name}: ${(err as Error).message}`, { cause: err });
  }
  tun.on('packets', (batch) => {
    for (let i = 0; i < batch.count; i++) channel.send(batch.packet(i));
  });
  channel.onPacket((packet) => tun.write(packet));
  o.log.info({ tun: tun.name, vnet: o.context.vnet, routes: o.routes.join(',') }, 'Connected to the edge');
  return {
    tun: tun.name,
    routes: o.routes,
    ended: channel.ended,
    close: () => {
      channel.close();
      tun.close(); // removing the device removes its routes
    },
  };
}
