import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { OxyError } from './errors.js';

/** The credentials file cloudflared writes: `<TunnelID>.json`. */
export interface TunnelCredentials {
  AccountTag: string;
  /** base64 */
  TunnelSecret: string;
  TunnelID: string;
  /** The edge to dial (HOST:PORT); empty means the local default. */
  Endpoint: string;
}

/** The token `tunnel token` prints: base64 of {"a","s","t","e"}, plus our edge CA pin. */
export interface TunnelToken {
  a: string;
  s: string;
  t: string;
  e?: string;
  /** sha256 of the edge CA's SPKI, base64, so a connector on another host can pin the edge. */
  p?: string;
}

export const MIN_SECRET_BYTES = 32;

export const credentialsPath = (home: string, tunnelId: string): string => join(home, `${tunnelId}.json`);

/** A fresh secret, or the user's base64 one checked for length. */
export function tunnelSecret(base64?: string): string {
  if (base64 === undefined) return randomBytes(MIN_SECRET_BYTES).toString('base64');
  const bytes = Buffer.from(base64, 'base64');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(base64) || bytes.length < MIN_SECRET_BYTES) {
    throw new OxyError(
      'OXY_ERR_INVALID_SECRET',
      `--secret must be base64 of at least ${MIN_SECRET_BYTES} bytes (got ${bytes.length}). Generate one with: openssl rand -base64 32`,
    );
  }
  return bytes.toString('base64');
}

/**
 * Writes a file atomically with mode 0400: a temporary sibling is written, flushed and
 * renamed over the target, so a reader sees the old file or the whole new one, never a part.
 */
export function writeSecretFileAtomic(path: string, contents: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'wx', 0o400);
    writeSync(fd, contents);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (err) {
    if (fd !== undefined) closeSync(fd);
    rmSync(tmp, { force: true });
    throw new OxyError('OXY_ERR_CREDENTIALS_WRITE', `Could not write credentials file ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

export function writeCredentialsFile(path: string, creds: TunnelCredentials): void {
  writeSecretFileAtomic(path, `${JSON.stringify(creds)}\n`);
}

export function readCredentialsFile(path: string): TunnelCredentials {
  let parsed: Partial<TunnelCredentials>;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new OxyError('OXY_ERR_CREDENTIALS_READ', `Could not read tunnel credentials from ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (typeof parsed.TunnelID !== 'string' || typeof parsed.TunnelSecret !== 'string' || typeof parsed.AccountTag !== 'string') {
    throw new OxyError('OXY_ERR_CREDENTIALS_READ', `${path} is not a tunnel credentials file: it needs AccountTag, TunnelSecret and TunnelID.`);
  }
  return { Endpoint: '', ...parsed } as TunnelCredentials;
}

export const encodeToken = (token: TunnelToken): string => Buffer.from(JSON.stringify(token)).toString('base64');

/** base64 of a JSON object whose named fields must be strings (tunnel and device tokens). */
export function decodeBase64Token<T>(text: string, requiredStrings: readonly string[], invalid: string): T {
  try {
    const token = JSON.parse(Buffer.from(text.trim(), 'base64').toString('utf8')) as Record<string, unknown>;
    if (token && requiredStrings.every((k) => typeof token[k] === 'string')) return token as T;
  } catch {
    // fall through to the error below
  }
  throw new OxyError('OXY_ERR_INVALID_TOKEN', invalid);
}

export const decodeToken = (text: string): TunnelToken =>
  decodeBase64Token<TunnelToken>(text, ['a', 's', 't'], 'Provided Tunnel token is not valid. Get a new one with: oxyctl tunnel token TUNNEL');

export const tokenToCredentials = (token: TunnelToken): TunnelCredentials => ({
  AccountTag: token.a,
  TunnelSecret: token.s,
  TunnelID: token.t,
  Endpoint: token.e ?? '',
});
