import { OxyError, type SystemErrorCode } from '../../core/errors.js';

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
    super(code as SystemErrorCode, message);
    this.name = 'NativeError';
    this.errno = errno;
    this.syscall = syscall;
  }
}

/** Use of a socket, TUN or server after close(): EBADF, like the addon's own check. */
export function closedError(what: string): NativeError {
  return new NativeError('(none: closed)', 9, 'EBADF', `${what} is closed`);
}
