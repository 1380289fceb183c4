import { OxyError } from '../../core/errors.js';

/**
 * A failed system call inside the addon. `code` is the errno name (`EADDRINUSE`,
 * `EAGAIN`, …) as in Node's own system errors, `syscall` names the call that
 * failed (`bind`, `ioctl(TUNSETIFF)`, `sendmmsg`, …). For batch calls, `index` is
 * the position of the datagram/packet that failed.
 */
export class NativeError extends OxyError {
  readonly errno: number;
  readonly syscall: string;
  index?: number;

  constructor(syscall: string, errno: number, code: string, message: string) {
    super(code, message);
    this.name = 'NativeError';
    this.errno = errno;
    this.syscall = syscall;
  }
}

/** Use of a socket, TUN or server after close(): EBADF, like the addon's own check. */
export function closedError(what: string): NativeError {
  return new NativeError('(none: closed)', 9, 'EBADF', `${what} is closed`);
}

/** Raised when the addon is not built or the platform is not Linux. */
export const ERR_NATIVE_UNAVAILABLE = 'OXY_ERR_NATIVE_UNAVAILABLE';
/** withNetns was given a function that returned a promise (it would run in the wrong namespace). */
export const ERR_NETNS_ASYNC = 'OXY_ERR_NETNS_ASYNC';
/** The thread could not switch back to its namespace: sockets created now land in the wrong one. */
export const ERR_NETNS_RESTORE = 'OXY_ERR_NETNS_RESTORE';
