// The store file meets the operating system: an empty, garbled or unreadable oxy.db is
// refused (never taken for a new, empty store), a read-only data directory still answers
// the read-only commands, and a full disk is said as such. Real processes; the read-only
// mount and the full disk live in a mount namespace of their own (unshare -m).
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BIN, oxy, oxyJson, oxyOk, run, tempHome } from '../helpers/cli.js';
import { privilegedDescribe } from '../helpers/privileged.js';

let home: string;
let cleanup: () => void;
beforeEach(() => ({ home, cleanup } = tempHome()));
afterEach(() => cleanup());

const errorOf = async (args: string[]) => {
  const r = await oxy(home, [...args, '-o', 'json']);
  expect(r.code).not.toBe(0);
  return (JSON.parse(r.stdout) as { error: { code: string; message: string } }).error;
};

describe('a store file that is not a store', () => {
  it('an empty oxy.db is refused, named, and left as it was', async () => {
    writeFileSync(join(home, 'oxy.db'), '');
    const r = await oxy(home, ['vnet', 'list']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`The store ${join(home, 'oxy.db')} is empty (0 bytes)`);
    expect(r.stderr).toContain('restore it from a backup');
    expect(await errorOf(['tunnel', 'list'])).toMatchObject({ code: 'OXY_ERR_STORE_UNREADABLE' });
    expect(statSync(join(home, 'oxy.db')).size).toBe(0);
  });

  it('a file that is not SQLite is refused and left as it was', async () => {
    writeFileSync(join(home, 'oxy.db'), 'this is not a database\n'.repeat(100));
    const r = await oxy(home, ['tunnel', 'list']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('is not a SQLite database');
    expect(readFileSync(join(home, 'oxy.db'), 'utf8')).toMatch(/^this is not a database/);
  });
});

/** A shell step between commands (it has no result). */
type Step = string[] | { sh: string };

/**
 * Runs steps one after another in a mount namespace prepared by `setup` (sh): oxyctl
 * commands (argv) and shell steps; returns each command's result.
 */
async function inMountNamespace(setup: string, steps: Step[], env: Record<string, string>) {
  const out = mkdtempSync(join(tmpdir(), 'oxyctl-mntns-'));
  try {
    const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
    const commands = steps.filter((s): s is string[] => Array.isArray(s));
    let n = 0;
    const script = [
      'set -e',
      setup,
      'set +e',
      ...steps.map((step) => {
        if (!Array.isArray(step)) return step.sh;
        const i = n++;
        return `${quote(process.execPath)} ${quote(BIN)} ${step.map(quote).join(' ')} >${out}/${i}.out 2>${out}/${i}.err; echo $? >${out}/${i}.rc`;
      }),
    ].join('\n');
    const r = await run('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script], { env: { NO_COLOR: '1', ...env } });
    if (r.code !== 0) throw new Error(`mount namespace setup failed: ${r.stderr}`);
    return commands.map((_, i) => ({
      code: Number(readFileSync(join(out, `${i}.rc`), 'utf8')),
      stdout: readFileSync(join(out, `${i}.out`), 'utf8'),
      stderr: readFileSync(join(out, `${i}.err`), 'utf8'),
    }));
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

privilegedDescribe('the data directory on a read-only or full file system', () => {
  it('an oxy.db this user cannot read is refused, naming the file and the fix', async () => {
    await oxyOk(home, ['vnet', 'add', 'site']);
    chmodSync(home, 0o755); // the directory is open, the store file owner-only (root's)
    const r = await run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, BIN, 'vnet', 'list'], {
      env: { OXY_HOME: home, HOME: home, NO_COLOR: '1' },
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`The store ${join(home, 'oxy.db')} cannot be read (EACCES): check its owner and permissions.`);
  });

  it('on a read-only mount, list/info/show/get answer from the store and a change is refused as read-only', async () => {
    await oxyOk(home, ['vnet', 'add', 'site']);
    await oxyOk(home, ['tunnel', 'create', 'web']);
    await oxyOk(home, ['tunnel', 'route', 'ip', 'add', '198.18.5.0/24', 'web']);
    const [tunnel] = await oxyJson<{ id: string }[]>(home, ['tunnel', 'list']);
    const [vnets, tunnels, info, show, get, add, edge] = await inMountNamespace(
      `mount --bind ${home} ${home}; mount -o remount,bind,ro ${home}`,
      [
        ['vnet', 'list', '-o', 'json'],
        ['tunnel', 'list', '-o', 'json'],
        ['tunnel', 'info', 'web', '-o', 'json'],
        ['tunnel', 'route', 'ip', 'show', '-o', 'json'],
        ['tunnel', 'route', 'ip', 'get', '198.18.5.7', '-o', 'json'],
        ['vnet', 'add', 'other', '-o', 'json'],
        // An edge on a copy would never see a change: it refuses to start.
        ['edge', 'run', '--tunnel-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--metrics', '127.0.0.1:0'],
      ],
      { OXY_HOME: home },
    );
    for (const r of [vnets, tunnels, info, show, get]) expect(r, r.stderr).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(vnets.stdout).map((v: { name: string }) => v.name)).toEqual(['site']);
    expect(JSON.parse(tunnels.stdout).map((t: { id: string }) => t.id)).toEqual([tunnel.id]);
    expect(JSON.parse(info.stdout)).toMatchObject({ id: tunnel.id, name: 'web' });
    expect(JSON.parse(show.stdout)).toMatchObject([{ network: '198.18.5.0/24', tunnel_id: tunnel.id }]);
    expect(get.stdout).toContain('198.18.5.0/24');
    expect(add.code).toBe(1);
    expect(JSON.parse(add.stdout).error).toMatchObject({
      code: 'OXY_ERR_STORE_READ_ONLY',
      message: expect.stringContaining(`The store in ${home} is read-only`),
    });
    expect(edge.code).toBe(1);
    expect(edge.stderr).toContain(`The store in ${home} is read-only`);
    // Nothing changed underneath.
    expect((await oxyJson<{ name: string }[]>(home, ['vnet', 'list'])).map((v) => v.name)).toEqual(['site']);
  });

  it('a full disk is said as such, changes nothing, still answers reads, and the same command works once space is freed', async () => {
    const mnt = mkdtempSync(join(tmpdir(), 'oxyctl-full-'));
    try {
      const data = join(mnt, 'home');
      const [list, create, add, edge, retried, show] = await inMountNamespace(
        `mount -t tmpfs -o size=512k tmpfs ${mnt}; ${process.execPath} ${BIN} tunnel create web >/dev/null; dd if=/dev/zero of=${mnt}/fill bs=4k 2>/dev/null || true`,
        [
          // Reads need a -shm index the full disk has no room for: they read a copy in $TMPDIR.
          ['tunnel', 'list', '-o', 'json'],
          ['tunnel', 'create', 'other', '-o', 'json'],
          ['tunnel', 'route', 'ip', 'add', '198.18.6.0/24', 'web', '-o', 'json'],
          ['edge', 'run', '--tunnel-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--metrics', '127.0.0.1:0'],
          { sh: `rm ${mnt}/fill` },
          ['tunnel', 'route', 'ip', 'add', '198.18.6.0/24', 'web'],
          ['tunnel', 'route', 'ip', 'show', '-o', 'json'],
        ],
        { OXY_HOME: data },
      );
      expect(list, list.stderr).toMatchObject({ code: 0 });
      expect(JSON.parse(list.stdout).map((t: { name: string }) => t.name)).toEqual(['web']);
      for (const r of [create, add]) {
        expect(r.code).toBe(1);
        expect(JSON.parse(r.stdout).error).toMatchObject({
          code: 'OXY_ERR_STORE_DISK_FULL',
          message: expect.stringContaining(`The disk holding ${data} is full`),
        });
      }
      // The edge would read a copy that never changes: it refuses to start.
      expect(edge.code).toBe(1);
      expect(edge.stderr).toContain(`The disk holding ${data} is full`);
      expect(retried, retried.stderr).toMatchObject({ code: 0 });
      expect(JSON.parse(show.stdout).map((r: { network: string }) => r.network)).toEqual(['198.18.6.0/24']);
    } finally {
      rmSync(mnt, { recursive: true, force: true });
    }
  });
}, ['root']);
