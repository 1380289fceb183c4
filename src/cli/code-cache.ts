/**
 * Loads a CommonJS file of the bundle (lib/oclif.cjs: oclif and the packages it loads) with a
 * V8 code cache kept next to it, so a command's start skips most of parsing and compiling it.
 * Node 20 has no compile cache of its own (`module.enableCompileCache` is Node 22), so this does
 * what v8-compile-cache does, for one file: `vm.Script` with `cachedData`.
 *
 * The cache is only ever an optimisation. Missing, stale (the source changed: the file records
 * the source's SHA-256), corrupt (it records its payload's SHA-256 too, checked before V8 sees
 * it), rejected by V8 (another Node, other V8 flags) or not writable (a packaged install's lib/
 * is read-only): the file is compiled as Node would, and the command behaves the same.
 * A missing or unusable cache is written at exit, when the functions the command ran are
 * compiled and go into it; `npm run build` writes one (scripts/bundle.js).
 * `OXY_CODE_CACHE=0`: no cache read or written.
 */
import { createHash } from 'node:crypto';
import { accessSync, constants, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import vm from 'node:vm';

/**
 * Node's CommonJS wrapper plus two names:
 * - `__import`: a vm.Script's own import() needs a loader that Node 20 calls experimental and
 *   that code from a cache loses (ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING), so the bundle's
 *   import() calls are `__import()` (scripts/bundle.js), this module's import().
 * - `navigator`: Node 21+'s global (Node 20 has none). pg looks for Cloudflare Workers at load,
 *   by `navigator.userAgent` or else by making a `Response`, which loads Node's fetch (undici):
 *   ~40 ms of CPU per command on PostgreSQL, for an answer that is always no here.
 */
const WRAPPER = '(function (exports, require, module, __filename, __dirname, __import, navigator) { ';
const importModule = (specifier: string): Promise<unknown> => import(specifier);
const nodeNavigator = (): unknown => (globalThis as { navigator?: unknown }).navigator ?? { userAgent: `Node.js/${process.versions.node.split('.')[0]}` };

const MAGIC = Buffer.from('oxyctl-v8-cache-1\n');
const HASH = 32;

const sha256 = (data: string | Buffer): Buffer => createHash('sha256').update(data).digest();

/** The V8 cache stored for `source` in `file`, or undefined when it is missing or not for it. */
function readCache(file: string, sourceHash: Buffer): Buffer | undefined {
  let raw: Buffer;
  try {
    raw = readFileSync(file);
  } catch {
    return undefined;
  }
  const head = MAGIC.length + 2 * HASH;
  if (raw.length <= head || !raw.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
  if (!raw.subarray(MAGIC.length, MAGIC.length + HASH).equals(sourceHash)) return undefined;
  const data = raw.subarray(head);
  if (!sha256(data).equals(raw.subarray(MAGIC.length + HASH, head))) return undefined;
  return data;
}

/** Replaces `file` in one rename, so a reader sees the old cache or the new one, never half. */
function writeCache(file: string, sourceHash: Buffer, data: Buffer): void {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, Buffer.concat([MAGIC, sourceHash, sha256(data), data]));
    renameSync(tmp, file);
  } catch {
    rmSync(tmp, { force: true });
  }
}

const writable = (dir: string): boolean => {
  try {
    accessSync(dir, constants.W_OK);
    return true;
  } catch {
    return false;
  }
};

/** `require(file)` of a CommonJS file, compiled with the code cache at `${file}.cache`. */
export function requireWithCodeCache(file: string): unknown {
  const useCache = process.env.OXY_CODE_CACHE !== '0';
  const source = readFileSync(file, 'utf8');
  const cacheFile = `${file}.cache`;
  const sourceHash = sha256(source);
  const cachedData = useCache ? readCache(cacheFile, sourceHash) : undefined;
  const script = new vm.Script(`${WRAPPER}${source}\n})`, { filename: file, cachedData });
  if (useCache && (!cachedData || script.cachedDataRejected) && writable(dirname(file))) {
    process.once('exit', () => writeCache(cacheFile, sourceHash, script.createCachedData()));
  }
  const module = { exports: {} as unknown, filename: file, id: file, loaded: false };
  const wrapper = script.runInThisContext() as (...args: unknown[]) => void;
  wrapper.call(module.exports, module.exports, createRequire(file), module, file, dirname(file), importModule, nodeNavigator());
  module.loaded = true;
  return module.exports;
}
