/**
 * Network namespaces are per thread. As root, the main thread can enter another
 * namespace with setns(CLONE_NEWNET), create sockets and TUNs there
 * synchronously, and switch back; what it created stays in that namespace.
 * Anything asynchronous (dns.lookup, dgram.bind with a hostname, libuv's thread
 * pool) runs later or elsewhere and lands in whatever namespace is current then.
 */
import { OxyError } from '../../core/errors.js';
import { native } from './binding.js';

/** Opens a namespace: a name (`ip netns add NAME`) or a path (/proc/PID/ns/net). */
export function openNetns(nameOrPath: string): number {
  const path = nameOrPath.includes('/') ? nameOrPath : `/var/run/netns/${nameOrPath}`;
  return native().openNetns(path);
}

/** An fd for the calling thread's own network namespace (to come back to). */
export function currentNetns(): number {
  return native().openNetns('/proc/thread-self/ns/net');
}

/** Moves the calling (main) thread into the namespace behind `fd`. */
export function setns(fd: number): void {
  const addon = native();
  addon.setns(fd, addon.CLONE_NEWNET);
}

/**
 * Runs `fn` inside another network namespace and always switches back. `fn` must
 * be synchronous: create sockets/TUNs inside, use them anywhere afterwards.
 */
export function withNetns<T>(target: number | string, fn: () => T): T {
  const addon = native();
  const home = currentNetns();
  const targetFd = typeof target === 'string' ? openNetns(target) : target;
  let result: T;
  try {
    addon.setns(targetFd, addon.CLONE_NEWNET);
    try {
      result = fn();
    } finally {
      try {
        addon.setns(home, addon.CLONE_NEWNET);
      } catch (cause) {
        // biome-ignore lint/correctness/noUnsafeFinally: failing to switch back must win over fn's outcome: sockets made now would land in the wrong namespace
        throw new OxyError('OXY_ERR_NETNS_RESTORE', 'could not switch the main thread back to its network namespace', { cause });
      }
    }
  } finally {
    addon.closeFd(home);
    if (typeof target === 'string') addon.closeFd(targetFd);
  }
  if (typeof (result as { then?: unknown } | null)?.then === 'function') {
    throw new OxyError('OXY_ERR_NETNS_ASYNC', 'withNetns needs a synchronous function: its async part would run in the original namespace');
  }
  return result;
}

/** Closes an fd the addon handed out (received over SCM_RIGHTS, openNetns, …). */
export function closeFd(fd: number): void {
  native().closeFd(fd);
}

/** dup(2) with O_CLOEXEC. */
export function dupFd(fd: number): number {
  return native().dupFd(fd);
}
