#!/usr/bin/env node
/**
 * The main job on embedded defaults. Until the edge and connector land (quick tunnel:
 * `oxyctl tunnel --hello-world`), this walks through the control plane of the
 * "many private virtual networks" setup in a throwaway data directory.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const bin = fileURLToPath(new URL('../bin/run.js', import.meta.url));
const home = mkdtempSync(join(tmpdir(), 'oxyctl-demo-'));
const steps = [
  ['vnet', 'add', '--default', 'vnet-frankfurt', 'For London and Munich employees primarily'],
  ['vnet', 'add', 'vnet-sydney', 'For APAC employees primarily'],
  ['tunnel', 'create', 'tunnel-fra'],
  ['tunnel', 'create', 'tunnel-syd'],
  ['tunnel', 'route', 'ip', 'add', '--vnet', 'vnet-frankfurt', '10.1.0.0/16', 'tunnel-fra'],
  ['tunnel', 'route', 'ip', 'add', '--vnet', 'vnet-sydney', '10.1.0.0/16', 'tunnel-syd'],
  ['tunnel', 'route', 'ip', 'add', '--vnet', 'vnet-sydney', '10.1.0.0/16', 'tunnel-syd'],
  ['tunnel', 'route', 'ip', 'show'],
  ['tunnel', 'route', 'ip', 'get', '--vnet', 'vnet-sydney', '10.1.2.3'],
];
try {
  for (const args of steps) {
    console.log(`\n$ oxyctl ${args.map((a) => (a.includes(' ') ? `"${a}"` : a)).join(' ')}`);
    spawnSync(process.execPath, [bin, ...args], { stdio: 'inherit', env: { ...process.env, OXY_HOME: home } });
  }
} finally {
  rmSync(home, { recursive: true, force: true });
}
