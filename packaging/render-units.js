#!/usr/bin/env node
/**
 * Writes the systemd units the packages ship into DIR, rendered by the same code as
 * `oxyctl service install` (dist/cli/service.js; run `npm run build` first):
 *   oxyctl.service       the connector, with /etc/oxyctl/config.yml (not enabled on install)
 *   oxyctl-edge.service  the edge
 *   node packaging/render-units.js DIR
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: render-units.js DIR');
  process.exit(2);
}
const { unitText, unitName, PACKAGED_CONFIG_FILE } = await import(new URL('../dist/cli/service.js', import.meta.url).href);
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, unitName('connector')), unitText({ kind: 'connector', source: { configFile: PACKAGED_CONFIG_FILE }, origin: 'package' }), {
  mode: 0o644,
});
writeFileSync(join(dir, unitName('edge')), unitText({ kind: 'edge', origin: 'package' }), { mode: 0o644 });
