import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../../helpers/cli.js';

// A hook author's project: `import type { … } from 'oxyctl/hooks'` resolves through the
// package's "exports" to the declarations `npm run build` writes (dist/types), and a hook
// of the wrong shape does not compile.
const TSC = join(ROOT, 'node_modules/.bin/tsc');
let dir: string;

function check(source: string): { status: number | null; out: string } {
  writeFileSync(join(dir, 'app.ts'), source);
  const r = spawnSync(TSC, ['-p', dir], { encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'oxy-hooks-app-'));
  mkdirSync(join(dir, 'node_modules'));
  symlinkSync(ROOT, join(dir, 'node_modules/oxyctl'), 'dir');
  writeFileSync(
    join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        target: 'ES2022',
        strict: true,
        noEmit: true,
        types: [],
        typeRoots: [join(ROOT, 'node_modules/@types')],
      },
      files: ['app.ts'],
    }),
  );
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("the hooks API as a package export ('oxyctl/hooks')", () => {
  it('is built: dist/types holds the declarations', () => {
    expect(existsSync(join(ROOT, 'dist/types/engine/hooks/types.d.ts')), 'run npm run build').toBe(true);
  });

  it('types a per-vnet hooks module', () => {
    const r = check(`
      import type { HooksModuleStart, VirtualNetwork } from 'oxyctl/hooks';
      const denied = (vnet: VirtualNetwork | undefined) => vnet?.name === 'guest';
      export const start: HooksModuleStart<{ seen: number }> = (settings) => ({
        newCtx: () => ({ seen: 0 }),
        egress: {
          handleConnection(target, ctx) {
            ctx.ext.seen++;
            settings.log.info({ ip: target.ip, vnet: ctx.vnet?.id }, 'egress');
            return denied(ctx.vnet) ? { action: 'block', reason: 'not from guest' } : undefined;
          },
        },
      });
    `);
    expect(r.out).toBe('');
    expect(r.status).toBe(0);
  });

  it('refuses a hook of the wrong shape', () => {
    const r = check(`
      import type { Hooks } from 'oxyctl/hooks';
      export const hooks: Hooks = { egress: { handleConnection: () => ({ action: 'teleport' }) } };
    `);
    expect(r.status).not.toBe(0);
    expect(r.out).toMatch(/app\.ts.*teleport/s);
  });
});
