#!/usr/bin/env node
/**
 * Cold start of `oxyctl vnet list` on a store of 1,000 vnets, as a ratio to `node -e 0`
 * measured in the same run (interleaved, median of N). Aim: <= 2.5x.
 *   npm run build && node bench/cold-start.js [--runs 15] [--vnets 1000]
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Store } from '../dist/store/index.js';
import { addVnet } from '../dist/core/vnets.js';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const runs = arg('runs', 15);
const vnets = arg('vnets', 1000);
const bin = fileURLToPath(new URL('../bin/run.js', import.meta.url));
const home = mkdtempSync(join(tmpdir(), 'oxy-bench-'));

const store = await Store.open(home);
await store.write(async () => {
  for (let i = 0; i < vnets; i++) await addVnet(store, { name: `vnet-${i}`, comment: `bench vnet ${i}` });
});
await store.close();

const time = (args, env = {}) => {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { env: { ...process.env, OXY_HOME: home, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) throw new Error(`${args.join(' ')} exited ${r.status}`);
  return Number(process.hrtime.bigint() - t0) / 1e6;
};
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// Warm the OS file cache once, then interleave so noise hits both sides alike.
time(['-e', '0']);
time([bin, 'vnet', 'list', '-o', 'json']);
const base = [];
const table = [];
const json = [];
for (let i = 0; i < runs; i++) {
  base.push(time(['-e', '0']));
  table.push(time([bin, 'vnet', 'list']));
  json.push(time([bin, 'vnet', 'list', '-o', 'json']));
}
rmSync(home, { recursive: true, force: true });

const b = median(base);
console.log(`baseline node -e 0:                 ${b.toFixed(1)} ms (median of ${runs})`);
console.log(`oxyctl vnet list (${vnets} vnets, table): ${median(table).toFixed(1)} ms  ratio ${(median(table) / b).toFixed(2)}x`);
console.log(`oxyctl vnet list -o json:             ${median(json).toFixed(1)} ms  ratio ${(median(json) / b).toFixed(2)}x`);
