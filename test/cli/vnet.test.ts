import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { spawn } from 'node:child_process';
import { BIN, oxy, oxyJson, oxyOk, parseTable, tempHome, storeEnv } from '../helpers/cli.js';

/** Runs the CLI on a pseudo-terminal (util-linux `script`), answering `answer` once it asks. */
function onTerminal(home: string, args: string[], answer: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('script', ['-qec', [process.execPath, BIN, ...args].join(' '), '/dev/null'], {
      env: { ...process.env, OXY_HOME: home, NO_COLOR: '1', ...storeEnv(home) },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let output = '';
    let answered = false;
    child.stdout.setEncoding('utf8').on('data', (d) => {
      output += d;
      if (!answered && output.includes('(y/N)')) {
        answered = true;
        child.stdin.write(answer);
      }
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

interface VnetDoc {
  id: string;
  name: string;
  comment: string;
  is_default_network: boolean;
  created_at: string;
  deleted_at: string | null;
}

let home: string;
let cleanup: () => void;
beforeEach(() => ({ home, cleanup } = tempHome()));
afterEach(() => cleanup());

describe('oxyctl vnet', () => {
  it('adds vnets; the first one becomes the default and --default moves the default', async () => {
    const first = await oxyOk(home, ['vnet', 'add', 'vnet-frankfurt', 'For London and Munich employees primarily']);
    expect(first).toMatch(/^Successfully added virtual 'network' vnet-frankfurt with ID: [0-9a-f-]{36} \(as the new default for this account\) \n/);
    const second = await oxyOk(home, ['vnet', 'add', 'vnet-sydney', 'For APAC employees primarily']);
    expect(second).toMatch(/^Successfully added virtual 'network' vnet-sydney with ID: [0-9a-f-]{36}\n/);
    await oxyOk(home, ['vnet', 'add', '-d', 'vnet-nyc']);

    const vnets = await oxyJson<VnetDoc[]>(home, ['vnet', 'list']);
    expect(vnets.map((v) => [v.name, v.is_default_network])).toEqual([
      ['vnet-frankfurt', false],
      ['vnet-sydney', false],
      ['vnet-nyc', true],
    ]);
    expect(vnets[0].comment).toBe('For London and Munich employees primarily');
  });

  it('prints a table with cloudflared columns, and json/yaml documents only', async () => {
    await oxyOk(home, ['vnet', 'add', '--default', 'vnet-frankfurt', 'fra']);
    const table = parseTable(await oxyOk(home, ['vnet', 'list']));
    expect(table.header).toEqual(['ID', 'NAME', 'IS DEFAULT', 'COMMENT', 'CREATED', 'DELETED']);
    expect(table.rows).toHaveLength(1);
    expect(table.rows[0].slice(1)).toEqual(['vnet-frankfurt', 'true', 'fra', expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/), '-']);

    const yaml = await oxyOk(home, ['vnet', 'list', '-o', 'yaml']);
    const docs = parseYaml(yaml) as VnetDoc[];
    expect(docs[0]).toMatchObject({ name: 'vnet-frankfurt', is_default_network: true, deleted_at: null });
    expect(docs[0].id).toBe(table.rows[0][0]);

    const r = await oxy(home, ['vnet', 'list', '-o', 'xml']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--output=xml|json, yaml/);
  });

  it('says so when no vnet matches', async () => {
    expect(await oxyOk(home, ['vnet', 'list'])).toBe(
      "No virtual networks were found for the given filter flags. You can use 'oxyctl vnet add' to add a virtual network.\n",
    );
    expect(await oxyJson(home, ['vnet', 'list'])).toEqual([]);
  });

  it('filters by id, name and default', async () => {
    await oxyOk(home, ['vnet', 'add', 'a']);
    await oxyOk(home, ['vnet', 'add', 'b']);
    const all = await oxyJson<VnetDoc[]>(home, ['vnet', 'list']);
    const b = all.find((v) => v.name === 'b')!;
    expect((await oxyJson<VnetDoc[]>(home, ['vnet', 'list', '--id', b.id])).map((v) => v.name)).toEqual(['b']);
    expect((await oxyJson<VnetDoc[]>(home, ['vnet', 'list', '--name', 'a'])).map((v) => v.name)).toEqual(['a']);
    expect((await oxyJson<VnetDoc[]>(home, ['vnet', 'list', '--is-default'])).map((v) => v.name)).toEqual(['a']);
    expect((await oxyJson<VnetDoc[]>(home, ['vnet', 'list', '--no-is-default'])).map((v) => v.name)).toEqual(['b']);
    // Go-style booleans, as cloudflared's scripts write them.
    expect((await oxyJson<VnetDoc[]>(home, ['vnet', 'list', '--is-default=false'])).map((v) => v.name)).toEqual(['b']);
    expect((await oxyJson<VnetDoc[]>(home, ['vnet', 'list', '--is-default=true'])).map((v) => v.name)).toEqual(['a']);
  });

  it('is also reachable as `oxyctl tunnel vnet`', async () => {
    await oxyOk(home, ['tunnel', 'vnet', 'add', 'x']);
    expect((await oxyJson<VnetDoc[]>(home, ['tunnel', 'vnet', 'list'])).map((v) => v.name)).toEqual(['x']);
  });

  it('refuses duplicate names, UUID names and unknown vnets', async () => {
    await oxyOk(home, ['vnet', 'add', 'a']);
    const dup = await oxy(home, ['vnet', 'add', 'a']);
    expect(dup.code).not.toBe(0);
    expect(dup.stderr).toContain('virtual network with name a already exists');
    const uuid = await oxy(home, ['vnet', 'add', '0dd7fccc-0a06-42a5-9bbf-a6cc9c44503b']);
    expect(uuid.code).not.toBe(0);
    expect(uuid.stderr).toContain('cannot be a UUID');
    const missing = await oxy(home, ['vnet', 'update', '--comment', 'x', 'nope']);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain('there should only be 1 non-deleted virtual network named nope');
  });

  it('updates name, comment and default; the default cannot be unset directly', async () => {
    await oxyOk(home, ['vnet', 'add', 'a']);
    await oxyOk(home, ['vnet', 'add', 'b']);
    expect(await oxyOk(home, ['vnet', 'update', '--name', 'b2', '--comment', 'new', 'b'])).toBe("Successfully updated virtual network 'b'\n");
    await oxyOk(home, ['vnet', 'update', '--default', 'b2']);
    const vnets = await oxyJson<VnetDoc[]>(home, ['vnet', 'list']);
    expect(vnets.map((v) => [v.name, v.comment, v.is_default_network])).toEqual([
      ['a', '', false],
      ['b2', 'new', true],
    ]);
    const r = await oxy(home, ['vnet', 'update', '--no-default', 'b2']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('cannot be made non-default directly');
    expect((await oxyJson<VnetDoc[]>(home, ['vnet', 'list', '--is-default']))[0].name).toBe('b2');
  });

  it('deletes only after confirmation, never the default, and routes only with --force', async () => {
    await oxyOk(home, ['vnet', 'add', 'main']);
    await oxyOk(home, ['vnet', 'add', 'side']);
    await oxyOk(home, ['tunnel', 'create', 't']);
    await oxyOk(home, ['tunnel', 'route', 'ip', 'add', '--vnet', 'side', '10.1.0.0/16', 't']);

    await oxyOk(home, ['vnet', 'add', 'empty']);
    // Without a terminal, as cloudflared: no prompt, no failure.
    expect(await oxyOk(home, ['vnet', 'delete', 'empty'])).toBe("Successfully deleted virtual network 'empty'\n");

    const isDefault = await oxy(home, ['vnet', 'delete', '--yes', 'main']);
    expect(isDefault.code).not.toBe(0);
    expect(isDefault.stderr).toContain('is the default and cannot be deleted');

    const inUse = await oxy(home, ['vnet', 'delete', '--yes', 'side']);
    expect(inUse.code).not.toBe(0);
    expect(inUse.stderr).toContain('is used by 1 IP route(s)');
    expect(await oxyJson<unknown[]>(home, ['tunnel', 'route', 'ip', 'show'])).toHaveLength(1);

    expect(await oxyOk(home, ['vnet', 'delete', '--force', 'side'])).toBe("Successfully deleted virtual network 'side'\n");
    expect(await oxyJson<unknown[]>(home, ['tunnel', 'route', 'ip', 'show'])).toHaveLength(0);
    expect(await oxyJson<unknown[]>(home, ['tunnel', 'route', 'ip', 'show', '--filter-is-deleted'])).toHaveLength(1);
    expect((await oxyJson<VnetDoc[]>(home, ['vnet', 'list'])).map((v) => v.name)).toEqual(['main']);
    const withDeleted = await oxyJson<VnetDoc[]>(home, ['vnet', 'list', '--show-deleted']);
    expect(withDeleted.find((v) => v.name === 'side')?.deleted_at).toMatch(/Z$/);
    // A deleted vnet's name is free again.
    await oxyOk(home, ['vnet', 'add', 'side']);
  });

  it('keeps the prompt on a terminal: answering no deletes nothing', async () => {
    await oxyOk(home, ['vnet', 'add', 'main']);
    await oxyOk(home, ['vnet', 'add', 'empty']);
    const r = await onTerminal(home, ['vnet', 'delete', 'empty'], 'n\r');
    expect(r.output).toMatch(/Delete virtual network empty \([0-9a-f-]{36}\)\? \(y\/N\)/);
    expect(r.output).toContain('Aborted: nothing was deleted.');
    expect(r.code).not.toBe(0);
    expect(parseTable(await oxyOk(home, ['vnet', 'list'])).rows.map((row) => row[1])).toEqual(['main', 'empty']);
  });
});
