/**
 * An exception nothing caught is a bug in oxyctl, never a way to handle bad input: a long-running
 * command logs it (with its stack, through the command's logger) and exits non-zero at once, so a
 * supervisor restarts it from a clean state. The hostile-input tests fail on this line.
 */
import type { Logger } from '../engine/observe/log.js';

export const CRASH_EXIT_CODE = 70; // EX_SOFTWARE (sysexits.h): an internal software error

export function exitOnCrash(log: Logger): void {
  const crash = (kind: string) => (err: unknown) => {
    log.fatal({ err, stack: (err as Error)?.stack }, `Bug: ${kind}; exiting (please report this)`);
    process.exit(CRASH_EXIT_CODE);
  };
  process.on('uncaughtException', crash('uncaught exception'));
  process.on('unhandledRejection', crash('unhandled promise rejection'));
}
