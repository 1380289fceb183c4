import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
// @ts-expect-error: a plain JS script, no declarations
import { checkImports } from '../../../scripts/check-imports.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const SCRIPT = join(ROOT, 'scripts/check-imports.js');
const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

/** A throw-away tree with the given files under src/. */
function tree(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'oxy-layers-'));
  dirs.push(root);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, 'src', path)), { recursive: true });
    writeFileSync(join(root, 'src', path), text);
  }
  return root;
}

describe('import direction (scripts/check-imports.js)', () => {
  it('the tree imports one way: commands → cli → engine → core/store, edge/connector → transport → protocol → packet/native', () => {
    expect(checkImports(ROOT)).toEqual([]);
  });

  it('fails on a wrong import: a parser importing the edge, the edge importing the connector, hooks importing the pipeline', () => {
    const root = tree({
      'engine/protocol/sni.ts': "import { EdgeServer } from '../edge/server.js';\nexport const x = EdgeServer;\n",
      'engine/edge/server.ts': "import type { Ingress } from '../connector/ingress.js';\nexport class EdgeServer {}\n",
      'engine/connector/ingress.ts': "// import { EdgeServer } from '../edge/server.js'; (a comment is not an import)\nexport class Ingress {}\n",
      'engine/hooks/index.ts': "export { Egress } from '../edge/pipeline/egress.js';\n",
      'engine/edge/pipeline/egress.ts': "import type { Hooks } from '../../hooks/types.js';\nexport class Egress {}\n",
      'engine/hooks/types.ts': 'export interface Hooks {}\n',
    });
    const problems = checkImports(root).map((p: { file: string; from: string; to: string }) => `${p.file}: ${p.from} → ${p.to}`);
    expect(problems.sort()).toEqual([
      'engine/edge/server.ts: edge → connector',
      'engine/hooks/index.ts: hooks → edge',
      'engine/protocol/sni.ts: protocol → edge',
    ]);

    const run = spawnSync(process.execPath, [SCRIPT, root], { encoding: 'utf8' });
    expect(run.status).toBe(1);
    expect(run.stderr).toContain('src/engine/protocol/sni.ts: protocol → edge (../edge/server.js): imports a layer above');
    expect(run.stderr).toContain('3 import(s) against the layers');
  });

  it('names a file no layer owns, so a new folder gets a place in the layers', () => {
    const root = tree({ 'engine/newthing/a.ts': 'export const a = 1;\n' });
    expect(checkImports(root)).toMatchObject([{ file: 'engine/newthing/a.ts', why: expect.stringContaining('no layer owns this file') }]);
    expect(spawnSync(process.execPath, [SCRIPT, root], { encoding: 'utf8' }).status).toBe(1);
  });
});
