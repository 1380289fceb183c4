/**
 * The dashboard's front end, built at package build time (Vite, web/dashboard → dist/dashboard)
 * and read into memory once. Hashed assets are cached for a year (their name changes with
 * their content); index.html is revalidated on every load (ETag), so a new build is seen at
 * once.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join, relative } from 'node:path';
import { gzipSync } from 'node:zlib';
import { packageRoot } from '../../../core/paths.js';

export const DASHBOARD_ASSETS_DIR = join(packageRoot(), 'dist', 'dashboard');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
};

export interface StaticFile {
  body: Buffer;
  /** The same bytes gzipped (made once at start-up), for clients that accept it; only when smaller. */
  gzip?: Buffer;
  headers: Record<string, string>;
}

/** Text files worth compressing. */
const COMPRESSIBLE = new Set(['.html', '.js', '.css', '.svg', '.json']);

/** Every file under the build directory by URL path ('/' is index.html); empty if the front end was not built. */
export function loadStaticFiles(dir = DASHBOARD_ASSETS_DIR): Map<string, StaticFile> {
  const files = new Map<string, StaticFile>();
  if (!existsSync(dir)) return files;
  const walk = (d: string): string[] => readdirSync(d).flatMap((f) => (statSync(join(d, f)).isDirectory() ? walk(join(d, f)) : [join(d, f)]));
  for (const path of walk(dir)) {
    const url = `/${relative(dir, path).split('\\').join('/')}`;
    const body = readFileSync(path);
    const immutable = url.startsWith('/assets/');
    const gzip = COMPRESSIBLE.has(extname(path)) ? gzipSync(body, { level: 9 }) : undefined;
    files.set(url === '/index.html' ? '/' : url, {
      body,
      gzip: gzip && gzip.length < body.length ? gzip : undefined,
      headers: {
        'content-type': TYPES[extname(path)] ?? 'application/octet-stream',
        'cache-control': immutable ? 'public, max-age=31536000, immutable' : 'no-cache',
        etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`,
      },
    });
  }
  return files;
}
