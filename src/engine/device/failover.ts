/**
 * A device's channel over several edges (`warp connect --token` with a list of edges): one
 * channel at a time, to one edge; when that edge goes away (its transport dies, it shuts
 * down) the device dials the next edge of the list, round and round with backoff, and the
 * TUN, its routes and the flows of its applications stay where they are. An edge that refuses
 * the device (UNAUTHORIZED, or its ip-packets stream answered with an error) is left for the
 * others too — one edge may run on another store — and only when every edge refused it since
 * one last accepted it (a revoked device: every edge of the store says the same) does it end.
 */
import { OxyError } from '../../core/errors.js';
import type { Logger } from '../observe/log.js';
import { TunnelCloseCode } from '../protocol/codes.js';
import type { TunnelCloseInfo, TunnelConnection } from '../transport/types.js';
import { watchSilence } from '../transport/common.js';
import type { PacketChannel } from './warp.js';

export interface FailoverOptions {
  /** The edges, as HOST:PORT (for logs); `dial(i)` reaches edge i. */
  edges: string[];
  dial(edge: number, signal: AbortSignal): Promise<TunnelConnection>;
  /** Opens the packet channel on a fresh connection; a rejection is a refusal (not retried). */
  attach(conn: TunnelConnection): Promise<PacketChannel>;
  log: Logger;
  /** Called with the edge's address and transport whenever the device is connected to an edge (the first, and each move). */
  onEdge?(edge: string, protocol: string): void;
  /** First pause after a failed round of dials; doubled up to `maxBackoffMs`. */
  backoffMs?: number;
  maxBackoffMs?: number;
  dialTimeoutMs?: number;
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
  });

/** How often the device asks its edge for an answer, and how long without one means the edge is gone. */
const PROBE_EVERY_MS = 1000;
const SILENT_MS = 3000;

/** How long to wait for the connection's close (and its code) after the stream ended. */
const CLOSE_INFO_WAIT_MS = 500;

/** Connects to the first edge that answers (trying each once), then follows the edges as they come and go. */
export async function failoverChannel(o: FailoverOptions): Promise<PacketChannel> {
  const stop = new AbortController();
  const packetHandlers: ((packet: Buffer) => void)[] = [];
  const routeHandlers: ((networks: string[]) => void)[] = [];
  let current: { channel: PacketChannel; conn: TunnelConnection; edge: number } | undefined;
  let lastError: Error | undefined;
  /** Edges that refused the device since they last accepted it, with what they said. */
  const refusing = new Map<number, Error>();
  let finish!: (reason: string | void) => void;
  const ended = new Promise<string | void>((resolve) => (finish = resolve));

  /** One dial and attach on edge i; undefined when the edge cannot be reached. */
  const tryEdge = async (i: number): Promise<{ channel: PacketChannel; conn: TunnelConnection; edge: number } | undefined> => {
    let conn: TunnelConnection;
    try {
      conn = await o.dial(i, AbortSignal.any([stop.signal, AbortSignal.timeout(o.dialTimeoutMs ?? 10_000)]));
    } catch (err) {
      lastError = err as Error;
      o.log.warn({ edge: o.edges[i], err }, 'Cannot reach the edge');
      return undefined;
    }
    let channel: PacketChannel;
    try {
      channel = await o.attach(conn);
    } catch (err) {
      conn.close();
      refuse(i, err as Error);
      return undefined;
    }
    refusing.delete(i);
    return { channel, conn, edge: i };
  };

  /** Edge i refused the device: logged and left; throws once every edge refuses (one edge: its own error). */
  const refuse = (i: number, err: Error): void => {
    lastError = err;
    refusing.set(i, err);
    if (refusing.size === o.edges.length) {
      if (o.edges.length === 1) throw err;
      const said = [...refusing].map(([edge, e]) => `${o.edges[edge]}: ${e.message}`).join('; ');
      throw new OxyError((err as OxyError).code ?? 'OXY_ERR_WARP_CONNECT', `every edge refused the device: ${said}`, { cause: err });
    }
    o.log.error({ edge: o.edges[i], err }, 'The edge refused the device; trying the other edges');
  };

  const use = (next: { channel: PacketChannel; conn: TunnelConnection; edge: number }) => {
    current = next;
    o.onEdge?.(o.edges[next.edge], next.conn.protocol);
    next.channel.onPacket((packet) => {
      for (const h of packetHandlers) h(packet);
    });
    for (const h of routeHandlers) next.channel.onRoutes?.(h);
    // A killed edge over QUIC says nothing (no RST as over TCP): probe it every tick (ngtcp2 never
    // retransmits a lost PING: a successor's stateless reset answers the next one), leave it when silent.
    const unwatch = watchSilence(next.conn, {
      everyMs: PROBE_EVERY_MS,
      silentMs: SILENT_MS,
      onSilent: (silent) => {
        o.log.warn({ edge: o.edges[next.edge], silentMs: Math.round(silent) }, 'The edge went silent');
        next.channel.close();
      },
    });
    void next.channel.ended.then(() => {
      unwatch();
      return lost(next);
    });
  };

  const lost = async (was: { conn: TunnelConnection; edge: number }) => {
    if (stop.signal.aborted) return finish();
    const info = await Promise.race([was.conn.closed, new Promise<undefined>((r) => setTimeout(r, CLOSE_INFO_WAIT_MS))]);
    current = undefined;
    if (info && refused(info)) {
      try {
        refuse(was.edge, new OxyError('OXY_ERR_TUNNEL_UNAUTHORIZED', info.reason || 'the edge turned the device away'));
      } catch {
        // Every edge refuses (revoked): the edge's own words end it, as with one edge.
        return finish(info.reason || undefined);
      }
    }
    o.log.warn({ edge: o.edges[was.edge], reason: info?.reason || undefined }, 'Lost the edge; moving to another');
    let backoff = o.backoffMs ?? 250;
    for (let attempt = 1; !stop.signal.aborted; attempt++) {
      const i = (was.edge + attempt) % o.edges.length;
      let next: Awaited<ReturnType<typeof tryEdge>>;
      try {
        next = await tryEdge(i);
      } catch (err) {
        return finish((err as Error).message);
      }
      if (stop.signal.aborted) return next?.channel.close();
      if (next) {
        o.log.info({ edge: o.edges[i], protocol: next.conn.protocol }, 'Moved to the edge');
        return use(next);
      }
      // A pause after each full round of the list (every edge tried once).
      if (attempt % o.edges.length === 0) {
        await sleep(backoff * (0.5 + Math.random() / 2), stop.signal);
        backoff = Math.min(backoff * 2, o.maxBackoffMs ?? 8000);
      }
    }
    finish();
  };

  for (let i = 0; i < o.edges.length && !current; i++) {
    const first = await tryEdge(i);
    if (first) use(first);
  }
  if (!current) {
    // One edge: its own error (a pin mismatch, a refused dial) says it best.
    if (o.edges.length === 1 && lastError) throw lastError;
    throw new OxyError(
      'OXY_ERR_WARP_CONNECT',
      `Cannot reach any edge (${o.edges.join(', ')}; the last: ${lastError?.message}): is 'oxyctl edge run' running there, and the address right?`,
      { cause: lastError },
    );
  }
  return {
    send: (packet) => current?.channel.send(packet),
    onPacket: (handler) => void packetHandlers.push(handler),
    onRoutes(handler) {
      routeHandlers.push(handler);
      current?.channel.onRoutes?.(handler);
    },
    ended,
    close: () => {
      stop.abort();
      current?.channel.close();
      finish();
    },
  };
}

/** The edge turned the device away (revoked): every edge of the store would. */
function refused(info: TunnelCloseInfo): boolean {
  return info.remote && info.code === TunnelCloseCode.UNAUTHORIZED;
}
