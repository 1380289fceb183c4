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
  const address = !host ? '::' : isIP(host) ? host : (await lookup(host)).address;
  return native().tcpListenReusePort(address, port, BACKLOG, false);
}
