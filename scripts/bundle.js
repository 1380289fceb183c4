#!/usr/bin/env node
/**
 * Bundles the CLI for start-up time: oclif and our compiled modules (dist/) go into lib/,
 * one entry per command plus shared chunks, so `oxyctl vnet list` reads a few files instead
 * of a few hundred. Packages with native parts or their own loaders stay external.
 * Measured: ~155 ms vs ~192 ms for `vnet list` (node -e 0: ~61 ms) — see bench/cold-start.js.
 */
import { readdirSync, rmSync, statSync } from 'node:fs';
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

rmSync(join(root, 'lib'), { recursive: true, force: true });
await build({
  input,
  platform: 'node',
  external: (id) => !id.startsWith('.') && !id.startsWith('/') && !INLINE.test(id),
  logLevel: 'warn',
  output: { dir: join(root, 'lib'), format: 'esm', entryFileNames: '[name].js', chunkFileNames: 'chunks/[name]-[hash].js' },
});
