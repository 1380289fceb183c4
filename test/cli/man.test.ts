import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/cli.js';

const GEN = join(ROOT, 'scripts/gen-man.js');

describe('man pages', () => {
  it('are generated from the command metadata and up to date (run `npm run man` when this fails)', () => {
    const r = spawnSync(process.execPath, [GEN, '--check'], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('the check fails on a stale page', () => {
    const dir = mkdtempSync(join(tmpdir(), 'oxy-man-'));
    try {
      cpSync(join(ROOT, 'man'), dir, { recursive: true });
      const page = join(dir, 'oxyctl-vnet-add.1');
      writeFileSync(page, readFileSync(page, 'utf8').replace('virtual network', 'virtual netwrok'));
      const r = spawnSync(process.execPath, [GEN, '--check', '--dir', dir], { encoding: 'utf8' });
      expect(r.status).toBe(1);
      expect(r.stderr).toContain('oxyctl-vnet-add.1');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('render with man(1), one page per command plus oxyctl(1)', () => {
    const text = execFileSync('man', ['-l', join(ROOT, 'man/oxyctl-tunnel-route-ip-add.1')], {
      encoding: 'utf8',
      env: { ...process.env, MANWIDTH: '100' },
    });
    expect(text).toContain('oxyctl tunnel route ip add [FLAGS] NETWORK TUNNEL [COMMENT]');
    expect(text).toContain('--vnet');
    const main = readFileSync(join(ROOT, 'man/oxyctl.1'), 'utf8');
    expect(main).toContain('.B oxyctl tunnel route ip add');
  });
});
