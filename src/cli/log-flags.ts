import { Flags } from '@oclif/core';
import { createLogger, LOG_LEVELS, type Logger } from '../engine/observe/log.js';

export const logFlags = {
  loglevel: Flags.option({ options: LOG_LEVELS, default: 'info', description: 'Application logging level' })(),
  'log-format': Flags.option({ options: ['text', 'json'] as const, default: 'text', description: 'Log line format on stderr' })(),
};

export const loggerFrom = (flags: { loglevel: string; 'log-format': 'text' | 'json' }): Logger =>
  createLogger({ level: flags.loglevel, format: flags['log-format'] });
