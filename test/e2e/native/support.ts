// Shared bits of the native e2e tests.
import dgram from 'node:dgram';
import { statSync } from 'node:fs';

/**
 * A Node dgram socket whose fd is created synchronously, so that inside
 * withNetns() it lands in that namespace. dgram.bind() resolves the address
 * with dns.lookup first (a tick later, in the wrong namespace); a lookup that
 * answers at once makes bind() create the socket before it returns.
 */
export function bindDgramSync(type: 'udp4' | 'udp6', address: string, port = 0, ipv6Only = false): dgram.Socket {
  const socket = dgram.createSocket({
    type,
    ipv6Only,
    lookup: (host, _options, callback) => (callback as (e: null, a: string, f: number) => void)(null, host, type === 'udp4' ? 4 : 6),
  });
  let failed: Error | undefined;
  socket.once('error', (err) => (failed = err));
  socket.bind(port, address);
  if (failed) throw failed;
  // A kernel-side failure (EADDRNOTAVAIL) arrives as 'error' on the next tick; the
  // fd exists now, so address() tells us whether bind() really happened.
  socket.address();
  return socket;
}

/** The inode of this thread's network namespace: equal inodes, same namespace. */
export function currentNetnsInode(): number {
  return statSync('/proc/thread-self/ns/net').ino;
}

/** Sends `data` until a reply arrives (bounded: `tries` × `ms`). */
export function request(
  socket: dgram.Socket,
  data: Buffer,
  port: number,
  address: string,
  tries = 5,
  ms = 300,
): Promise<{ msg: Buffer; rinfo: dgram.RemoteInfo }> {
  return new Promise((resolve, reject) => {
    let attempt = 0;
    let timer: NodeJS.Timeout;
    const onMessage = (msg: Buffer, rinfo: dgram.RemoteInfo) => {
      clearTimeout(timer);
      socket.off('message', onMessage);
      resolve({ msg, rinfo });
    };
    const fire = () => {
      if (attempt++ >= tries) {
        socket.off('message', onMessage);
        reject(new Error(`no reply from ${address} port ${port} after ${tries} tries`));
        return;
      }
      socket.send(data, port, address);
      timer = setTimeout(fire, ms);
    };
    socket.on('message', onMessage);
    fire();
  });
}
