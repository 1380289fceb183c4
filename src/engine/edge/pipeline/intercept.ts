/**
 * The tunnel phase of a connection that has its upstream (a CONNECT tunnel, an upgraded TCP
 * IP flow): `tunnel.shouldInterceptHttps`, then `tunnel.appTunnelPipeline` or the engine's
 * splice.
 *
 * `tunnel.shouldInterceptHttps` needs the client's first bytes (a TLS ClientHello names the
 * server). Waiting for them must not hang protocols where the server speaks first (SMTP,
 * SSH banners, FTP): whichever side sends first decides. If it is the upstream, the
 * connection is not a TLS client's and the hook gets no SNI at once. The bytes read are put
 * back (`unshift`) so the pipeline or the splice sees the streams whole.
 */
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { spliceSockets } from '../../native/splice.js';
import { parseSni } from '../../protocol/sni.js';
import type { HookConnection, HookRunner } from '../../hooks/runner.js';
import type { HookContext, SocketAddress } from '../../hooks/types.js';

export interface TunnelOptions {
  /**
   * With no hook on the bytes, relay two plain sockets in the kernel (native/splice.ts)
   * instead of stream pipes; either side's end or error then ends both.
   */
  kernelSplice?: boolean;
}

/** Runs the tunnel phase; errors on either side destroy the other. */
export async function runTunnel(
  r: HookRunner,
  conn: HookConnection,
  client: Duplex,
  upstream: Duplex,
  upstreamAddress: SocketAddress,
  o: TunnelOptions = {},
): Promise<void> {
  upstream.on('error', () => client.destroy());
  client.on('error', () => upstream.destroy());
  client.on('close', () => upstream.destroy());
  let intercept = false;
  let sni: string | undefined;
  if (r.shouldInterceptHttps) {
    const decision = await decideIntercept(r, conn, client, upstream);
    if (!decision.open) {
      upstream.end();
      client.end();
      return;
    }
    ({ sni, intercept } = decision);
  }
  if (r.appTunnelPipeline) {
    // A stream paused on purpose (the upgrade, the intercept decision) would not flow for the app's 'data' listeners.
    for (const s of [client, upstream]) if (s.isPaused()) s.resume();
    await r.call(
      conn,
      'tunnel.appTunnelPipeline',
      r.appTunnelPipeline,
      client,
      upstream,
      { sni, intercept, upstream: upstreamAddress },
      conn as HookContext<unknown>,
    );
    return;
  }
  if (intercept) conn.log.warn({ sni }, 'shouldInterceptHttps answered true but no tunnel.appTunnelPipeline is implemented: splicing');
  // pipe() resumes a paused source.
  client.pipe(upstream);
  upstream.pipe(client);
  if (o.kernelSplice && client instanceof Socket && upstream instanceof Socket) handOverWhenBulk(conn, client, upstream);
}

/**
 * Bytes a tunnel carries through Node's pipes before it moves to the kernel relay: setting one
 * up costs ~60 µs of CPU, which a tunnel of one small request never earns back (0.45 ms/MB saved).
 */
export const SPLICE_AFTER_BYTES = 256 * 1024;

const isLoopback = (address: string): boolean => address === '::1' || /^(::ffff:)?127\./i.test(address);

/**
 * Moves a piped tunnel to the kernel relay (native/splice.ts) once it has carried
 * SPLICE_AFTER_BYTES either way: unpipe, stop reading, let both sides' pending writes reach the
 * kernel, then splice. A tunnel that ended a direction first stays on its pipes.
 */
function handOverWhenBulk(conn: HookConnection, a: Socket, b: Socket): void {
  let moved = 0;
  let ended = false;
  const count = (chunk: Buffer): void => {
    moved += chunk.length;
    if (moved >= SPLICE_AFTER_BYTES) void handOver();
  };
  const onEnd = (): void => {
    ended = true;
    stop();
  };
  const stop = (): void => {
    for (const s of [a, b]) {
      s.off('data', count);
      s.off('end', onEnd);
    }
  };
  for (const s of [a, b]) {
    s.on('data', count);
    s.once('end', onEnd);
  }
  const flushed = (s: Socket): Promise<unknown> => (s.writableLength ? new Promise((resolve) => s.write(Buffer.alloc(0), resolve)) : Promise.resolve());
  const handOver = async (): Promise<void> => {
    stop();
    a.unpipe(b);
    b.unpipe(a);
    for (const s of [a, b]) s.pause();
    await Promise.all([flushed(a), flushed(b)]);
    // A sender on this host (loopback): copy on the relay thread instead (native/splice.ts SpliceOptions.copy).
    const local = [a.remoteAddress, b.remoteAddress].some((address) => address !== undefined && isLoopback(address));
    const relay = ended || a.destroyed || b.destroyed ? undefined : spliceSockets(a, b, { copy: local });
    if (!relay) {
      // Not possible here after all (a side ended or is gone meanwhile): back on the pipes.
      if (!a.destroyed && !b.destroyed) {
        a.pipe(b);
        b.pipe(a);
      }
      return;
    }
    const { error } = await relay;
    if (error) conn.log.debug({ err: error }, 'Spliced tunnel failed');
    a.destroy();
    b.destroy();
  };
}

export interface InterceptDecision {
  sni?: string;
  intercept: boolean;
  /** False when either side ended before sending anything: nothing more to do. */
  open: boolean;
}

async function decideIntercept(r: HookRunner, conn: HookConnection, client: Duplex, upstream: Duplex): Promise<InterceptDecision> {
  const first = await firstOfEither(client, upstream);
  if (!first) return { intercept: false, open: false };
  const sni = first.from === client ? parseSni(first.chunk) : undefined;
  const intercept = (await r.call(conn, 'tunnel.shouldInterceptHttps', r.shouldInterceptHttps!, sni, conn as HookContext<unknown>)) === true;
  return { sni, intercept, open: true };
}

/** The first chunk either stream sends (put back into it), or undefined if one ended first. */
function firstOfEither(a: Duplex, b: Duplex): Promise<{ from: Duplex; chunk: Buffer } | undefined> {
  return new Promise((resolve) => {
    const cleanups: (() => void)[] = [];
    const done = (result?: { from: Duplex; chunk: Buffer }) => {
      for (const fn of cleanups.splice(0)) fn();
      if (result) result.from.unshift(result.chunk);
      resolve(result);
    };
    for (const s of [a, b]) {
      const onData = (chunk: Buffer) => done({ from: s, chunk });
      const onEnd = () => done(undefined);
      s.on('data', onData);
      s.once('end', onEnd);
      s.once('close', onEnd);
      cleanups.push(() => {
        s.off('data', onData);
        s.off('end', onEnd);
        s.off('close', onEnd);
        s.pause();
      });
    }
    // A stream paused on purpose (an upgraded socket waits so) does not flow for a new 'data' listener.
    a.resume();
    b.resume();
  });
}
