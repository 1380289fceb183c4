#!/usr/bin/env node
/**
 * The import-direction check: imports in src/ run one way, down the layers below.
 *
 *   node scripts/check-imports.js [ROOT]   # prints each wrong import, exits 1 if any
 *
 * A module may import its own files and any module in a LOWER layer; never a module above
 * it, nor a different module of its own layer (edge and connector do not import each
 * other). The longest matching path prefix names a file's module. Type-only imports count:
 * they are dependencies too. test/ is not checked.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Top to bottom. Each entry: a module name → the path prefixes (under src/) it owns. */
export const LAYERS = [
  { commands: ['commands/'] },
  { cli: ['cli/'] },
  { 'engine-app': ['engine/quick-tunnel.ts', 'engine/quick-connector-worker.ts'] },
  // On-ramps and off-ramps: the edge, the connector, the device (warp), access clients.
  { edge: ['engine/edge/'], connector: ['engine/connector/'], device: ['engine/device/'], access: ['engine/access/'] },
  { transport: ['engine/transport/'], netns: ['engine/netns/'] },
  { flow: ['engine/flow/'] },
  { protocol: ['engine/protocol/'] },
  // The interface transports implement; the protocol speaks over it, so it sits below.
  { 'transport-interface': ['engine/transport/types.ts'] },
  { packet: ['engine/packet/'], native: ['engine/native/'] },
  // The hooks API (types, runner, order, load): the vocabulary every layer above may use;
  // it depends on nothing in the engine but logging.
  { hooks: ['engine/hooks/'] },
  { observe: ['engine/observe/'] },
  // Node plumbing with no engine knowledge (stream pumps, hardened HTTP servers).
  { util: ['engine/util/'] },
  // Use-cases and the store below them share errors and paths: one module.
  { 'core/store': ['core/', 'store/'] },
];

const owners = LAYERS.flatMap((layer, rank) => Object.entries(layer).flatMap(([name, prefixes]) => prefixes.map((prefix) => ({ prefix, name, rank })))).sort(
  (a, b) => b.prefix.length - a.prefix.length,
);

/** The module and layer rank of a path relative to src/, or undefined if no layer owns it. */
export function moduleOf(srcPath) {
  return owners.find((o) => srcPath.startsWith(o.prefix));
}

const IMPORT = /(?:^|[\s;])(?:import|export)\s[^'"`;]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s+['"]([^'"]+)['"]/gm;

/** The relative specifiers a source text imports (static, re-export, dynamic, side-effect). */
export function importsOf(text) {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  return [...code.matchAll(IMPORT)].map((m) => m[1] ?? m[2] ?? m[3]).filter((s) => s.startsWith('.'));
}

function sourceFiles(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...sourceFiles(path));
    else if (/\.(ts|js|mts)$/.test(name) && !name.endsWith('.d.ts')) out.push(path);
  }
  return out;
}

/** Every wrong import under ROOT/src: { file, spec, from, to } with module names. */
export function checkImports(root) {
  const src = join(root, 'src');
  const problems = [];
  for (const file of sourceFiles(src)) {
    const rel = relative(src, file);
    const from = moduleOf(rel);
    if (!from) {
      problems.push({ file: rel, spec: '', from: '?', to: '?', why: 'no layer owns this file: add it to LAYERS in scripts/check-imports.js' });
      continue;
    }
    for (const spec of importsOf(readFileSync(file, 'utf8'))) {
      const target = relative(src, resolve(dirname(file), spec)).replace(/\.js$/, '.ts');
      if (target.startsWith('..')) continue;
      const to = moduleOf(target);
      if (!to || to.name === from.name || to.rank > from.rank) continue;
      problems.push({ file: rel, spec, from: from.name, to: to.name, why: to.rank === from.rank ? 'same layer, different module' : 'imports a layer above' });
    }
  }
  return problems;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = resolve(process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), '..'));
  if (!existsSync(join(root, 'src'))) {
    console.error(`${root} has no src/ directory`);
    process.exit(2);
  }
  const problems = checkImports(root);
  for (const p of problems) console.error(`src/${p.file}: ${p.from} → ${p.to} (${p.spec}): ${p.why}`);
  if (problems.length) {
    console.error(`${problems.length} import(s) against the layers (see LAYERS in scripts/check-imports.js, docs/edge-map.md)`);
    process.exit(1);
  }
}
