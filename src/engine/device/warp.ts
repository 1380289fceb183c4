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
import { SeqpacketSocket, Tun } from '../native/index.js';

const run = promisify(execFile);

export interface WarpOptions {
  /** The edge's SEQPACKET on-ramp (`edge run --ip-tunnel-listen`). */
  seqpacketPath: string;
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

export async function startWarp(o: WarpOptions): Promise<Warp> {
  let socket: SeqpacketSocket;
  try {
    socket = SeqpacketSocket.connect(o.seqpacketPath, { maxMessageSize: 65535 + 64, batchSize: 128 });
  } catch (err) {
    throw new OxyError('OXY_ERR_WARP_CONNECT', `Cannot reach the edge's IP tunnel on-ramp at ${o.seqpacketPath}: ${(err as Error).message}. Is 'oxyctl edge run --ip-tunnel-listen ${o.seqpacketPath}' running?`, { cause: err });
  }
  // A large MTU lets the device's kernel hand over 64 KB segments: one datagram each to the
  // edge, whose kernel re-segments for the real path. Per-packet work, not bytes, is the cost.
  const tun = Tun.open({ name: o.tunName ?? 'oxywarp0', mtu: o.mtu ?? DEFAULT_WARP_MTU, txQueueLength: 5000, batchSize: 128, up: true });
  try {
    const ip = (...args: string[]) => run('ip', args);
    const v6 = (cidr: string) => cidr.includes(':');
    await ip('addr', 'add', `${o.address ?? DEFAULT_WARP_ADDRESS}/32`, 'dev', tun.name);
    for (const route of o.routes) await ip(...(v6(route) ? ['-6'] : []), 'route', 'replace', route, 'dev', tun.name);
  } catch (err) {
    tun.close();
    socket.close();
    throw new OxyError('OXY_ERR_WARP_ROUTES', `Could not configure ${tun.name}: ${(err as Error).message}`, { cause: err });
  }
  socket.send(Buffer.from(JSON.stringify(o.context)));
  tun.on('packets', (batch) => {
    for (let i = 0; i < batch.count; i++) socket.send(batch.packet(i));
  });
  socket.on('message', (packet: Buffer) => tun.write(packet));
  const ended = new Promise<void>((resolve) => {
    socket.once('end', resolve);
    socket.once('close', resolve);
    socket.once('error', (err) => {
      o.log.error({ err }, 'IP tunnel to the edge failed');
      resolve();
    });
  });
  o.log.info({ tun: tun.name, vnet: o.context.vnet, routes: o.routes.join(',') }, 'Connected to the edge');
  return {
    tun: tun.name,
    routes: o.routes,
    ended,
    close: () => {
      socket.close();
      tun.close(); // removing the device removes its routes
    },
  };
}
