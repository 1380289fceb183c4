import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | undefined;

/**
 * The package's root directory (where package.json, migrations/ and build/ are), found
 * from this module's location whether it runs from dist/ (tsc) or lib/ (the bundled CLI).
 */
export function packageRoot(): string {
  if (root) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) || !existsSync(join(dir, 'migrations'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`no package root above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
  return (root = dir);
}
