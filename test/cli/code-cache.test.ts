/**
 * The bundle's V8 code cache (lib/oclif.cjs.cache, src/cli/code-cache.ts) is only an
 * optimisation: missing, stale after a rebuild, corrupt, or in a directory the user cannot write
 * (a packaged install), every command still works and prints exactly what it prints without it.
 * Each case runs on a copy of the built package (bin/, lib/, package.json, the manifest,
 * migrations; node_modules and the addon linked), so the tree the other tests run is untouched.
 */
import {
  chmodSync,
  chownSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, run, type CliResult } from '../helpers/cli.js';

// A command through oclif to the store, and oclif's error for an unknown one.
const COMMANDS = [['vnet', 'list', '-o', 'json'], ['no-such-command']];

let pkg: string;
let home: string;
let nobodyHome: string;
const asRoot = process.getuid?.() === 0;
let cache: string;
let expected: CliResult[];

/**
 * Runs COMMANDS with the copy's bin/run.js; as `nobody`, a user who cannot write lib/ (as root,
 * the user nobody; as another user, lib/ is made read-only while they run).
 */
async function commands(env: Record<string, string> = {}, user?: 'nobody'): Promise<CliResult[]> {
  const results: CliResult[] = [];
  const dataDir = user ? nobodyHome : home;
  if (user && !asRoot) chmodSync(join(pkg, 'lib'), 0o555);
  try {
    for (const args of COMMANDS) {
      const node = [process.execPath, join(pkg, 'bin/run.js'), ...args];
      const [cmd, ...rest] = user && asRoot ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', ...node] : node;
      results.push(await run(cmd, rest, { env: { OXY_HOME: dataDir, HOME: dataDir, NO_COLOR: '1', ...env } }));
    }
  } finally {
    if (user && !asRoot) chmodSync(join(pkg, 'lib'), 0o755);
  }
  return results;
}

beforeAll(async () => {
  pkg = mkdtempSync(join(tmpdir(), 'oxyctl-codecache-'));
  for (const f of ['bin', 'lib', 'migrations', 'package.json', 'oclif.manifest.json']) cpSync(join(ROOT, f), join(pkg, f), { recursive: true });
  symlinkSync(join(ROOT, 'node_modules'), join(pkg, 'node_modules'));
  symlinkSync(join(ROOT, 'build'), join(pkg, 'build'));
  chmodSync(pkg, 0o755);
  home = join(pkg, 'home');
  mkdirSync(home);
  // The other user's data directory (it cannot open root's store file).
  nobodyHome = join(pkg, 'home-nobody');
  mkdirSync(nobodyHome);
  if (asRoot) chownSync(nobodyHome, 65534, 65534);
  cache = join(pkg, 'lib/oclif.cjs.cache');
  expect(existsSync(cache)).toBe(true); // written by npm run build
  // The reference: oclif loaded by the same file without any cache.
  rmSync(cache);
  expected = await commands({ OXY_CODE_CACHE: '0' });
  expect(existsSync(cache)).toBe(false);
  expect(expected.map((r) => r.code)).toEqual([0, 2]);
  expect(JSON.parse(expected[0].stdout)).toEqual([]);
  expect(expected[1].stderr).toContain('no-such-command');
});

afterAll(() => rmSync(pkg, { recursive: true, force: true }));

describe('the code cache', () => {
  it('is written when missing, then used without being written again; the output is the same', async () => {
    expect(await commands()).toEqual(expected);
    const written = readFileSync(cache);
    expect(written.length).toBeGreaterThan(10_000);
    const mtime = statSync(cache).mtimeMs;
    expect(await commands()).toEqual(expected);
    expect(statSync(cache).mtimeMs).toBe(mtime);
    expect(readFileSync(cache).equals(written)).toBe(true);
    expect(readdirSync(join(pkg, 'lib')).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('is not used and is rewritten when the bundle was rebuilt (stale)', async () => {
    await commands(); // a cache for the current file
    const before = readFileSync(cache);
    const oclif = join(pkg, 'lib/oclif.cjs');
    writeFileSync(oclif, `${readFileSync(oclif, 'utf8')}\n// rebuilt\n`);
    expect(await commands()).toEqual(expected);
    expect(readFileSync(cache).equals(before)).toBe(false);
    expect(await commands()).toEqual(expected);
  });

  it('is not used and is rewritten when corrupt or truncated', async () => {
    await commands();
    const good = readFileSync(cache);
    const flipped = Buffer.from(good);
    for (let i = 200; i < flipped.length; i += 997) flipped[i] ^= 0xff;
    for (const bad of [flipped, good.subarray(0, good.length >> 1), Buffer.from('garbage')]) {
      writeFileSync(cache, bad);
      expect(await commands()).toEqual(expected);
      expect(readFileSync(cache).length).toBeGreaterThan(10_000);
    }
  });

  it('is only read, never written, with OXY_CODE_CACHE=0', async () => {
    rmSync(cache, { force: true });
    expect(await commands({ OXY_CODE_CACHE: '0' })).toEqual(expected);
    expect(existsSync(cache)).toBe(false);
  });

  it('leaves a lib/ the user cannot write alone (a packaged install), missing or present', async () => {
    rmSync(cache, { force: true });
    expect(await commands({}, 'nobody')).toEqual(expected);
    expect(existsSync(cache)).toBe(false);
    expect(readdirSync(join(pkg, 'lib')).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    // Written by lib/'s owner (as the package's build does), then used by the user.
    await commands();
    const mtime = statSync(cache).mtimeMs;
    expect(await commands({}, 'nobody')).toEqual(expected);
    expect(statSync(cache).mtimeMs).toBe(mtime);
  });
});
