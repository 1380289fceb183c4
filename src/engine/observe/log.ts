/**
 * Structured logs through pino. `text` renders each record the way cloudflared prints
 * them (`2026-01-02T03:04:05Z INF Registered tunnel connection connIndex=0 …`), so users
 * and tests read the familiar lines; `json` passes pino's records through unchanged.
 */
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };
export type LogFormat = 'text' | 'json';

const LEVEL_TAGS: Record<number, string> = { 10: 'TRC', 20: 'DBG', 30: 'INF', 40: 'WRN', 50: 'ERR', 60: 'FTL' };
const OMIT = new Set(['level', 'time', 'msg', 'pid', 'hostname']);

const fieldText = (v: unknown): string => {
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  return /[\s"=]/.test(s) ? JSON.stringify(s) : s;
};

export function formatRecord(line: string): string {
  const rec = JSON.parse(line) as Record<string, unknown>;
  const time = new Date(rec.time as number).toISOString().replace(/\.\d{3}Z$/, 'Z');
  const fields = Object.entries(rec)
    .filter(([k]) => !OMIT.has(k))
    .map(([k, v]) => (k === 'err' && v && typeof v === 'object' ? `error=${fieldText((v as { message?: string }).message)}` : `${k}=${fieldText(v)}`));
  return `${time} ${LEVEL_TAGS[rec.level as number] ?? 'INF'} ${rec.msg ?? ''}${fields.length ? ` ${fields.join(' ')}` : ''}\n`;
}

/**
 * An error's message with its causes' appended, each only when the text so far does not already
 * hold it: our errors usually embed their cause's message ("TLS connection to … failed: <cause>"),
 * and pino's own serializer would print it twice.
 */
export function messageWithCauses(err: unknown): string {
  let text = '';
  const seen = new Set<unknown>();
  for (let e = err; e instanceof Error && !seen.has(e); e = e.cause) {
    seen.add(e);
    if (!text) text = e.message;
    else if (e.message && !text.includes(e.message)) text += `: ${e.message}`;
  }
  return text;
}

const errSerializer = (err: unknown) =>
  err instanceof Error ? { ...pino.stdSerializers.err(err), message: messageWithCauses(err) } : pino.stdSerializers.err(err as Error);

export interface LogOptions {
  level?: string;
  format?: LogFormat;
  /** Where lines go; stderr by default, as cloudflared logs. */
  stream?: { write(s: string): unknown };
}

/** cloudflared's level names map onto pino's. */
const LEVELS: Record<string, LevelWithSilent> = {
  trace: 'trace',
  debug: 'debug',
  info: 'info',
  warn: 'warn',
  error: 'error',
  fatal: 'fatal',
  silent: 'silent',
};

export function createLogger(options: LogOptions = {}): Logger {
  const out = options.stream ?? process.stderr;
  const level = LEVELS[options.level ?? 'info'] ?? 'info';
  const destination = options.format === 'json' ? { write: (s: string) => out.write(s) } : { write: (s: string) => out.write(formatRecord(s)) };
  return pino({ level, base: undefined, timestamp: pino.stdTimeFunctions.epochTime, serializers: { err: errSerializer } }, destination);
}

export const LOG_LEVELS = Object.keys(LEVELS);
