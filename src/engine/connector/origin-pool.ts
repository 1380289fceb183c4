/**
 * The connector's origin connections, bounded as cloudflared's originRequest says:
 * `keepAliveConnections` is the most idle connections kept per origin service (Go's
 * MaxIdleConns), `keepAliveTimeout` how long one may sit idle. Concurrency stays unbounded
 * (a cap froze the tunnel at 100 long streams, docs/decisions.md).
 *
 * undici grows a pool by one client per concurrent request and keeps every client's socket
 * until its keep-alive timeout: after a burst of 5,000 streams, ~4,000 idle sockets. Here each
 * client's socket is known (its connect function is wrapped), and when a client becomes idle
 * with more than `maxIdle` idle ones, the longest idle sockets are closed. The client itself
 * stays in undici's pool, unconnected, and dials again if it is picked.
 */
import type { Socket } from 'node:net';
import { Client, Pool, type Dispatcher } from 'undici';

type Connector = NonNullable<Client.Options['connect']> & ((...args: never[]) => unknown);

interface Tracked {
  client: Client;
  socket?: Socket;
}

/**
 * A factory for undici Pools (per origin) whose clients' idle sockets are bounded to `maxIdle`
 * across all of them; 0 means no bound, as MaxIdleConns 0 does in Go.
 */
export function boundedIdlePools(maxIdleConnections: number): { poolFactory: (origin: string | URL, opts: Pool.Options) => Pool; idleSockets(): number } {
  const maxIdle = maxIdleConnections > 0 ? maxIdleConnections : Infinity;
  const tracked = new Set<Tracked>();
  /** Clients that became idle, longest idle first (a Set keeps insertion order); some may be busy again since. */
  const idle = new Set<Tracked>();
  const isIdle = (t: Tracked) => t.socket !== undefined && !t.socket.destroyed && t.client.stats.running === 0 && t.client.stats.pending === 0;

  // Entries busy again are dropped first, then the longest idle sockets closed. Runs only when
  // the set outgrew the bound, and walks at most the entries added since its last run plus maxIdle.
  const trim = () => {
    for (const t of idle) if (!isIdle(t)) idle.delete(t);
    for (const t of idle) {
      if (idle.size <= maxIdle) return;
      idle.delete(t);
      t.socket!.destroy();
    }
  };

  const clientFactory = (origin: string | URL, opts: Client.Options): Client => {
    const t = {} as Tracked;
    const connect = opts.connect as Connector;
    t.client = new Client(origin, {
      ...opts,
      connect: ((options: Parameters<Connector>[0], callback: (err: Error | null, socket: Socket | null) => void) =>
        connect(
          options as never,
          ((err: Error | null, socket: Socket | null) => {
            if (socket) t.socket = socket;
            callback(err, socket);
          }) as never,
        )) as Connector,
    });
    t.client.on('drain', () => {
      if (!isIdle(t)) return;
      idle.delete(t);
      idle.add(t);
      if (idle.size > maxIdle) trim();
    });
    t.client.on('disconnect', () => {
      t.socket = undefined;
      idle.delete(t);
    });
    tracked.add(t);
    // undici drops a client whose dial failed from its pool: so do we.
    t.client.on('connectionError', () => {
      tracked.delete(t);
      idle.delete(t);
    });
    return t.client;
  };

  return {
    poolFactory: (origin, opts) => new Pool(origin, { ...opts, factory: clientFactory as (origin: URL, opts: object) => Dispatcher }),
    idleSockets: () => [...tracked].filter(isIdle).length,
  };
}
