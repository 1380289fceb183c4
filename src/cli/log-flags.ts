import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Flags } from '@oclif/core';
import { OxyError } from '../core/errors.js';
import { createLogger, LOG_LEVELS, type Logger } from '../engine/observe/log.js';

export const logFlags = {
  loglevel: Flags.option({ options: LOG_LEVELS, default: 'info', description: 'Application logging level', env: 'TUNNEL_LOGLEVEL' })(),
  'log-format': Flags.option({ options: ['text', 'json'] as const, default: 'text', description: 'Log line format on stderr' })(),
  logfile: Flags.string({ description: 'Also write the log to this file (appended)', env: 'TUNNEL_LOGFILE' }),
  'log-directory': Flags.string({ description: 'Also write the log to oxyctl.log in this directory (appended)', env: 'TUNNEL_LOGDIRECTORY' }),
};

/** The file the log goes to besides stderr, as cloudflared's --logfile / --log-directory. */
export const logFilePath = (flags: { logfile?: string; 'log-directory'?: string }): string | undefined =>
  flags.logfile ?? (flags['log-directory'] ? join(flags['log-directory'], 'oxyctl.log') : undefined);

export function loggerFrom(flags: { loglevel: string; 'log-format': 'text' | 'json'; logfile?: string; 'log-directory'?: string }): Logger {
  const path = logFilePath(flags);
  if (!path) return createLogger({ level: flags.loglevel, format: flags['log-format'] });
  let fd: number;
  try {
    mkdirSync(dirname(path), { recursive: true });
    fd = openSync(path, 'a', 0o644);
  } catch (err) {
    throw new OxyError('OXY_ERR_LOGFILE', `Cannot open the log file ${path}: ${(err as Error).message}`, { cause: err });
  }
  process.once('exit', () => closeSync(fd));
  // Synchronous appends: log lines are few (connection events), and none is lost at exit.
  const stream = { write: (s: string) => (process.stderr.write(s), writeSync(fd, s)) };
  return createLogger({ level: flags.loglevel, format: flags['log-format'], stream });
}
