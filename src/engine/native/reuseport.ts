/**
 * Listening with SO_REUSEPORT (`edge run --workers N`): each worker process listens on the same
 * address with a socket of its own and the kernel spreads new connections over them by hash.
 * Node 20's net has no reusePort option, so the addon makes the socket and the server adopts
 * it (`listen({fd})`). Without `reusePort` this is Node's own listen, exactly as before.
 */
import { lookup } from 'node:dns/promises';
import { isIP, type Server } from 'node:net';
import { native } from './binding.js';

/** Node's default accept backlog. */
const BACKLOG = 511;

export interface ListenOptions {
  /** Share the address with other processes that listen with it too (SO_REUSEPORT). */
  reusePort?: boolean;
}

/** Listens on HOST:PORT; resolves once listening, rejects with the bind error. */
export async function listenOn(server: Server, host: string | undefined, port: number, o: ListenOptions = {}): Promise<void> {
  const target = o.reusePort ? { fd: await reusePortFd(host, port) } : { port, host };
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(target, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** A listening TCP socket with SO_REUSEPORT on HOST:PORT (a name is resolved first; none: every address, dual-stack). */
async function reusePortFd(host: string | undefined, port: number): Promise<number> {
  return native().tcpListenReusePort(await ipOf(host), port, BACKLOG, false);
}

const ipOf = async (host: string | undefined) => (!host ? '::' : isIP(host) ? host : (await lookup(host)).address);

/** A port held for a group of SO_REUSEPORT sockets, and UDP members of the group made up front. */
export interface ReusePortGroup {
  /** The address bound (a name resolved) and the port (the kernel's pick for port 0). */
  address: string;
  port: number;
  /** One bound UDP socket per worker (fds), kept open here: the group's members never change. */
  udp: number[];
  /**
   * Takes the TCP socket that holds the port (bound, not listening) to listen on it; the
   * group no longer closes it then (its new owner does).
   */
  takeTcp(): number;
  close(): void;
}

/**
 * Reserves HOST:PORT (port 0: the kernel picks) with a TCP socket that is bound but does not
 * listen (the primary of `edge run --workers` listens on it later: it places each tunnel
 * connection in a worker itself), and makes `udpCount` UDP sockets of the port's SO_REUSEPORT
 * group. The kernel hashes a UDP 4-tuple onto the group's members in order: a member that left
 * and came back (a worker restarted with a socket of its own) moves other workers' QUIC
 * connections to sockets that do not know them, and they are reset. Sockets held by the primary
 * and handed to each worker again keep every 4-tuple where it was.
 */
export async function reusePortGroup(host: string | undefined, port: number, udpCount: number): Promise<ReusePortGroup> {
  const address = await ipOf(host);
  const n = native();
  const reserve = n.tcpListenReusePort(address, port, -1, false);
  const fds = [reserve];
  let tcpTaken = false;
  try {
    const bound = n.socketAddress(reserve).port;
    for (let i = 0; i < udpCount; i++) fds.push(n.udpBindReusePort(address, bound, false));
    return {
      address,
      port: bound,
      udp: fds.slice(1),
      takeTcp: () => {
        tcpTaken = true;
        return reserve;
      },
      close: () => fds.forEach((fd) => (fd !== reserve || !tcpTaken) && n.closeFd(fd)),
    };
  } catch (err) {
    for (const fd of fds) n.closeFd(fd);
    throw err;
  }
}
