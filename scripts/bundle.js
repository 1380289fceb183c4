#!/usr/bin/env node
/**
 * Bundles the CLI for start-up time: oclif and our compiled modules (dist/) go into lib/,
 * one entry per command plus shared chunks, so `oxyctl vnet list` reads a few files instead
 * of a few hundred. Packages with native parts or their own loaders stay external.
 * Measured: ~155 ms vs ~192 ms for `vnet list` (node -e 0: ~61 ms) — see bench/cold-start.js.
 *
 * oclif and its packages (CommonJS, ~630 kB, loaded by every command), pg (every command on
 * PostgreSQL), yaml and prom-client (edges and connectors) are CommonJS files of their own,
 * lib/NAME.cjs, which lib/NAME.js loads with a V8 code cache (src/cli/code-cache.ts) and
 * re-exports; the ESM chunks import them as `#NAME` (package.json's "imports"). The caches (lib/NAME.cjs.cache)
 * are written here, and again by any command that finds one missing or stale in a writable lib/.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'rolldown';

const root = fileURLToPath(new URL('../', import.meta.url));
const dist = join(root, 'dist');
const walk = (d) => readdirSync(d).flatMap((f) => (statSync(join(d, f)).isDirectory() ? walk(join(d, f)) : f.endsWith('.js') ? [join(d, f)] : []));

const input = { run: join(dist, 'cli/execute.js') };
for (const file of walk(join(dist, 'commands'))) input[relative(dist, file).replace(/\.js$/, '')] = file;
// A worker thread's entry (the quick tunnel's connector) must be a file of its own.
input['engine/quick-connector-worker'] = join(dist, 'engine/quick-connector-worker.js');

// Inlined: oclif and the pure-JS packages it loads at start-up. Everything else stays a
// normal import from node_modules (native addons, packages loaded on demand).
const INLINE =
  /^(@oclif\/core|semver|debug|ms|supports-color|has-flag|ansis|tinyglobby|fdir|picomatch|lilconfig|minimatch|brace-expansion|balanced-match|wordwrap|widest-line|string-width|strip-ansi|ansi-regex|emoji-regex|is-fullwidth-code-point|wrap-ansi|ansi-styles|indent-string|clean-stack|escape-string-regexp|get-package-type|is-wsl|is-docker|is-inside-container|cli-spinners|ejs|jake|async|filelist|lru-cache|yallist|js-yaml|argparse|natural-orderby|slice-ansi|color-convert|color-name)(\/|$)/;

// The loader oclif's shim uses: an entry, so it stays a file the shim can import.
input['code-cache'] = join(dist, 'cli/code-cache.js');

/**
 * CommonJS packages every command (oclif), every command on PostgreSQL (pg) or every edge and
 * connector (yaml, prom-client) loads: each is a CommonJS file of its own, lib/NAME.cjs, loaded with a V8 code cache by lib/NAME.js, which the
 * ESM chunks import as #NAME (package.json's "imports"). `named`: re-export its names too (pg's
 * are getters, one of them requires pg-native: its users take the default export).
 */
const CACHED = [
  { pkg: '@oclif/core', name: 'oclif', named: true, inline: (id) => INLINE.test(id) },
  { pkg: 'pg', name: 'pg', named: false, inline: (id) => !/^(pg-native|pg-cloudflare)(\/|$)/.test(id) },
  // An edge's and a connector's: their config files and their metrics.
  { pkg: 'yaml', name: 'yaml', named: true, inline: () => true },
  // contentType is a getter of the default registry's (set by setContentType): not copied.
  { pkg: 'prom-client', name: 'prom-client', named: true, skip: ['contentType'], inline: () => true },
];

const lib = join(root, 'lib');
rmSync(lib, { recursive: true, force: true });
const bare = (id) => !id.startsWith('.') && !id.startsWith('/');
await build({
  input,
  platform: 'node',
  external: (id) => id.startsWith('#') || (bare(id) && !INLINE.test(id) && !CACHED.some((c) => c.pkg === id)),
  plugins: [
    {
      name: 'cached-packages',
      resolveId: (id) => {
        const cached = CACHED.find((c) => c.pkg === id);
        return cached ? { id: `#${cached.name}`, external: true } : null;
      },
    },
  ],
  logLevel: 'warn',
  output: { dir: lib, format: 'esm', entryFileNames: '[name].js', chunkFileNames: 'chunks/[name]-[hash].js' },
});
const { requireWithCodeCache } = await import(join(lib, 'code-cache.js'));
process.env.OXY_CODE_CACHE = '0'; // this process loads the packages only to name their exports
for (const { pkg, name, named, inline, skip = [] } of CACHED) {
  await build({
    input: { [name]: createRequire(import.meta.url).resolve(pkg) },
    platform: 'node',
    external: (id) => bare(id) && !inline(id),
    logLevel: 'warn',
    // import() in a vm.Script from a code cache has no loader: the loader passes one as __import.
    plugins: [{ name: 'import-call', renderChunk: (code) => code.replace(/(?<![\w$.])import\(/g, '__import(') }],
    output: { dir: lib, format: 'cjs', entryFileNames: '[name].cjs' },
  });
  const names = named
    ? Object.keys(requireWithCodeCache(join(lib, `${name}.cjs`))).filter((n) => n !== 'default' && n !== '__esModule' && !skip.includes(n))
    : [];
  writeFileSync(
    join(lib, `${name}.js`),
    [
      `// Generated by scripts/bundle.js: lib/${name}.cjs (${pkg}) loaded with its V8 code cache.`,
      "import { fileURLToPath } from 'node:url';",
      "import { requireWithCodeCache } from './code-cache.js';",
      `const pkg = requireWithCodeCache(fileURLToPath(new URL('./${name}.cjs', import.meta.url)));`,
      ...(names.length ? [`export const { ${names.join(', ')} } = pkg;`] : []),
      'export default pkg;',
      '',
    ].join('\n'),
  );
}

// The cache, from one command's run (its exit writes it: see code-cache.ts).
delete process.env.OXY_CODE_CACHE;
const version = spawnSync(process.execPath, [join(root, 'bin/run.js'), 'version'], { stdio: ['ignore', 'ignore', 'inherit'] });
if (version.status !== 0) throw new Error(`bin/run.js version exited ${version.status}: the bundle does not run`);
// The others', from loading them (a build has no server or edge to run a command against).
const load = CACHED.filter((c) => c.name !== 'oclif').map((c) => `await import(${JSON.stringify(join(lib, `${c.name}.js`))});`);
const loaded = spawnSync(process.execPath, ['--input-type=module', '-e', load.join('\n')], { stdio: 'inherit' });
if (loaded.status !== 0) throw new Error(`loading lib/{${CACHED.map((c) => c.name)}}.js exited ${loaded.status}`);
