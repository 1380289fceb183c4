import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { oxy, oxyJson, oxyOk, parseTable, tempHome } from '../helpers/cli.js';

let home: string;
let cleanup: () => void;
beforeEach(() => ({ home, cleanup } = tempHome()));
afterEach(() => cleanup());

describe('oxyctl warp enroll / devices / revoke', () => {
  it('enrolls devices with tokens, lists them, and revokes one only after confirmation', async () => {
    const token = JSON.parse(Buffer.from((await oxyOk(home, ['warp', 'enroll', 'laptop'])).trim(), 'base64').toString());
    expect(Object.keys(token).sort()).toEqual(expect.arrayContaining(['a', 'd', 's']));
    expect(Buffer.from(token.s, 'base64')).toHaveLength(32);
    await oxyOk(home, ['warp', 'enroll', 'phone']);
    const dup = await oxy(home, ['warp', 'enroll', 'phone']);
    expect(dup.code).not.toBe(0);
    expect(dup.stderr).toContain('A device named phone is already enrolled.');

    const table = parseTable(await oxyOk(home, ['warp', 'devices']));
    expect(table.header).toEqual(['ID', 'NAME', 'CREATED', 'DELETED']);
    expect(table.rows.map((r) => r[1])).toEqual(['laptop', 'phone']);
    expect(table.rows[0][0]).toBe(token.d);

    expect((await oxy(home, ['warp', 'revoke', 'laptop'])).stderr).toContain('Pass --yes to confirm');
    expect(await oxyOk(home, ['warp', 'revoke', '--yes', 'laptop'])).toBe(`Revoked device laptop with id ${token.d}\n`);
    expect((await oxyJson<{ name: string }[]>(home, ['warp', 'devices'])).map((d) => d.name)).toEqual(['phone']);
    const all = await oxyJson<{ name: string; deleted_at: string | null }[]>(home, ['warp', 'devices', '--show-deleted']);
    expect(all.find((d) => d.name === 'laptop')?.deleted_at).toMatch(/Z$/);
    const gone = await oxy(home, ['warp', 'revoke', '--yes', 'laptop']);
    expect(gone.stderr).toContain('laptop is neither the ID nor the name of any enrolled device');
  });
});
