import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { installService, uninstallService, unitText, type ServiceEnv } from '../../src/cli/service.js';
import { encodeToken } from '../../src/core/credentials.js';
import { isOxyError } from '../../src/core/errors.js';
import { oxy, oxyOk, tempHome } from '../helpers/cli.js';

const TOKEN = encodeToken({
  a: 'account-tag',
  s: Buffer.alloc(32, 7).toString('base64'),
  t: '6ff42ae2-765d-4adf-8112-31c55c1551ef',
  e: '127.0.0.1:7844',
});
const UNIT = 'etc/systemd/system/oxyctl.service';
const EDGE_UNIT = 'etc/systemd/system/oxyctl-edge.service';
const TOKEN_FILE = 'etc/oxyctl/tunnel.env';
const WANTS = 'etc/systemd/system/multi-user.target.wants/oxyctl.service';
const haveSystemctl = spawnSync('systemctl', ['--version']).status === 0;

let home: string;
let cleanupHome: () => void;
let root: string;
beforeEach(() => {
  ({ home, cleanup: cleanupHome } = tempHome());
  root = mkdtempSync(join(tmpdir(), 'oxyctl-root-'));
});
afterEach(() => {
  cleanupHome();
  rmSync(root, { recursive: true, force: true });
});

const mode = (path: string) => (statSync(path).mode & 0o777).toString(8);
/** The [Service] settings of a unit, as key → values. */
function settings(text: string): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const kv = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (kv) m.set(kv[1], [...(m.get(kv[1]) ?? []), kv[2]]);
  }
  return m;
}

function writeConfig(dir: string, body?: string): string {
  const creds = join(dir, 'creds.json');
  writeFileSync(creds, '{}');
  const path = join(dir, 'config.yml');
  writeFileSync(path, body ?? `tunnel: 6ff42ae2-765d-4adf-8112-31c55c1551ef\ncredentials-file: ${creds}\ningress:\n  - service: http_status:404\n`);
  return path;
}

describe('oxyctl service install / uninstall (into a fake root)', () => {
  it('--token writes a 0644 unit that runs the connector and a 0600 token file, enables it offline, and uninstall removes both', async () => {
    const out = await oxyOk(home, ['service', 'install', '--root', root, '--token', TOKEN]);
    expect(out).toContain(`Wrote ${join(root, TOKEN_FILE)}\n`);
    expect(out).toContain(`Wrote ${join(root, UNIT)}\n`);
    expect(out).toContain('Linux service for oxyctl installed successfully (oxyctl.service)');

    const unit = readFileSync(join(root, UNIT), 'utf8');
    const s = settings(unit);
    expect(s.get('ExecStart')).toEqual(['/usr/bin/oxyctl tunnel run']);
    expect(s.get('EnvironmentFile')).toEqual(['/etc/oxyctl/tunnel.env']);
    expect(s.get('Environment')).toEqual(['OXY_HOME=/var/lib/oxyctl']);
    expect(s.get('Restart')).toEqual(['on-failure']);
    expect(s.get('After')).toEqual(['network-online.target']);
    expect(s.get('Wants')).toEqual(['network-online.target']);
    expect(s.get('WantedBy')).toEqual(['multi-user.target']);
    // The token is never in the world-readable unit (nor, so, in the process arguments).
    expect(unit).not.toContain(TOKEN);
    expect(mode(join(root, UNIT))).toBe('644');
    expect(readFileSync(join(root, TOKEN_FILE), 'utf8')).toContain(`\nTUNNEL_TOKEN=${TOKEN}\n`);
    expect(mode(join(root, TOKEN_FILE))).toBe('600');
    if (haveSystemctl) expect(readlinkSync(join(root, WANTS))).toBe('/etc/systemd/system/oxyctl.service');

    const un = await oxyOk(home, ['service', 'uninstall', '--root', root]);
    expect(un).toContain(`Removed ${join(root, UNIT)}\n`);
    expect(un).toContain('Linux service for oxyctl uninstalled successfully');
    expect(existsSync(join(root, UNIT))).toBe(false);
    expect(existsSync(join(root, TOKEN_FILE))).toBe(false);
    expect(() => lstatSync(join(root, WANTS))).toThrow();
  });

  it('the token can be given as an argument, as cloudflared takes it; OXY_SERVICE_ROOT stands for --root', async () => {
    await oxyOk(home, ['service', 'install', TOKEN], { OXY_SERVICE_ROOT: root });
    expect(readFileSync(join(root, TOKEN_FILE), 'utf8')).toContain(TOKEN);
  });

  it('--config runs the connector with that file; without --token or --config the data directory config.yml is used', async () => {
    const config = writeConfig(home);
    const r1 = mkdtempSync(join(tmpdir(), 'oxyctl-root-'));
    try {
      await oxyOk(home, ['service', 'install', '--root', r1, '--config', config]);
      expect(settings(readFileSync(join(r1, UNIT), 'utf8')).get('ExecStart')).toEqual([`/usr/bin/oxyctl tunnel run --config ${config}`]);
      expect(existsSync(join(r1, TOKEN_FILE))).toBe(false);
    } finally {
      rmSync(r1, { recursive: true, force: true });
    }
    await oxyOk(home, ['service', 'install', '--root', root]);
    expect(readFileSync(join(root, UNIT), 'utf8')).toContain(`--config ${config}\n`);
  });

  it("on a cloudflared host, the config in ~/.cloudflared is the service's, with one notice", async () => {
    const user = mkdtempSync(join(tmpdir(), 'oxyctl-user-'));
    try {
      mkdirSync(join(user, '.cloudflared'));
      const config = writeConfig(join(user, '.cloudflared'));
      const r = await oxy(home, ['service', 'install', '--root', root], { HOME: user });
      expect(r.code).toBe(0);
      expect(r.stderr).toContain(`Using cloudflared's config file ${config}`);
      expect(settings(readFileSync(join(root, UNIT), 'utf8')).get('ExecStart')).toEqual([`/usr/bin/oxyctl tunnel run --config ${config}`]);
    } finally {
      rmSync(user, { recursive: true, force: true });
    }
  });

  it('--edge writes oxyctl-edge.service running the edge; uninstall --edge removes it', async () => {
    const out = await oxyOk(home, ['service', 'install', '--edge', '--root', root, '-o', 'json']);
    const doc = JSON.parse(out) as { unit: string; files: string[] };
    expect(doc.unit).toBe('oxyctl-edge.service');
    expect(doc.files).toEqual([join(root, EDGE_UNIT)]);
    const s = settings(readFileSync(join(root, EDGE_UNIT), 'utf8'));
    expect(s.get('ExecStart')).toEqual(['/usr/bin/oxyctl edge run']);
    expect(s.get('Restart')).toEqual(['on-failure']);
    expect(existsSync(join(root, UNIT))).toBe(false);
    await oxyOk(home, ['service', 'uninstall', '--edge', '--root', root]);
    expect(existsSync(join(root, EDGE_UNIT))).toBe(false);
  });

  it('refuses without a token or a config, with an invalid token, and a config the service cannot run with', async () => {
    const none = await oxy(home, ['service', 'install', '--root', root]);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('Cannot determine which tunnel the service should run: no --token, no --config, and no config.yml in');
    expect(none.stderr).toContain("oxyctl service install --token TOKEN' with the token from 'oxyctl tunnel token TUNNEL'");
    expect(none.stdout).toBe('');

    const bad = await oxy(home, ['service', 'install', '--root', root, '--token', 'not-a-token']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe('Provided Tunnel token is not valid. Get a new one with: oxyctl tunnel token TUNNEL\n');

    const injected = Buffer.from(`${JSON.stringify({ a: 'x', s: 'y', t: 'z' })}`)
      .toString('base64')
      .replace(/=*$/, '\nEVIL=1');
    const inj = await oxy(home, ['service', 'install', '--root', root, '--token', injected]);
    expect(inj.code).toBe(1);

    const noTunnel = writeConfig(home, 'ingress:\n  - service: http_status:404\n');
    const cfg = await oxy(home, ['service', 'install', '--root', root, '--config', noTunnel]);
    expect(cfg.code).toBe(1);
    expect(cfg.stderr).toContain("must contain entries 'tunnel' and 'credentials-file'");

    const both = await oxy(home, ['service', 'install', '--root', root, '--token', TOKEN, '--edge']);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('cannot also be provided when using --token');
    expect(existsSync(join(root, 'etc'))).toBe(false);
  });

  it('refuses to overwrite an installed service, and uninstall refuses when nothing is installed', async () => {
    await oxyOk(home, ['service', 'install', '--root', root, '--token', TOKEN]);
    const again = await oxy(home, ['service', 'install', '--root', root, '--token', TOKEN]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`oxyctl service is already installed at ${join(root, UNIT)}; `);
    expect(again.stderr).toContain('`oxyctl service uninstall` to clean up the existing service');

    await oxyOk(home, ['service', 'uninstall', '--root', root]);
    const gone = await oxy(home, ['service', 'uninstall', '--root', root]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain(`oxyctl service is not installed: ${join(root, UNIT)} does not exist`);
  });
});

describe('service core on the live system (systemd, systemctl and / faked)', () => {
  function fakeEnv(running: boolean, uid = 0, fail?: string) {
    const calls: string[][] = [];
    const env: ServiceEnv = {
      run: (cmd, args) => {
        calls.push([cmd, ...args]);
        return fail && args.includes(fail) ? { status: 1, stderr: `Failed to ${fail} unit` } : { status: 0, stderr: '' };
      },
      systemdRunning: () => running,
      uid: () => uid,
      systemRoot: root,
    };
    return { env, calls };
  }

  it('with systemd running: writes, daemon-reload, enable --now; uninstall: disable --now, remove, daemon-reload', () => {
    const { env, calls } = fakeEnv(true);
    const result = installService({ kind: 'connector', token: TOKEN, home }, env);
    expect(calls).toEqual([
      ['systemctl', 'daemon-reload'],
      ['systemctl', 'enable', '--now', 'oxyctl.service'],
    ]);
    expect(result).toMatchObject({ unit: 'oxyctl.service', enabled: true });
    expect(result.notice).toBeUndefined();
    expect(result.files).toEqual([join(root, TOKEN_FILE), join(root, UNIT)]);
    // Not installed from the package here: the unit runs this node with this CLI.
    expect(settings(readFileSync(join(root, UNIT), 'utf8')).get('ExecStart')?.[0]).toMatch(/^\S*node\S* \S+ tunnel run$/);

    calls.length = 0;
    const un = uninstallService({ kind: 'connector' }, env);
    expect(calls).toEqual([
      ['systemctl', 'disable', '--now', 'oxyctl.service'],
      ['systemctl', 'daemon-reload'],
    ]);
    expect(un.files).toEqual([join(root, UNIT), join(root, TOKEN_FILE)]);
    expect(existsSync(join(root, UNIT))).toBe(false);
  });

  it('runs /usr/bin/oxyctl when the package installed it', () => {
    mkdirSync(join(root, 'usr/bin'), { recursive: true });
    writeFileSync(join(root, 'usr/bin/oxyctl'), '#!/bin/sh\n', { mode: 0o755 });
    installService({ kind: 'edge', home }, fakeEnv(true).env);
    expect(settings(readFileSync(join(root, EDGE_UNIT), 'utf8')).get('ExecStart')).toEqual(['/usr/bin/oxyctl edge run']);
  });

  it('says clearly when systemd is not running (a container), and writes the unit without calling systemctl', () => {
    const { env, calls } = fakeEnv(false);
    const result = installService({ kind: 'edge', home }, env);
    expect(calls).toEqual([]);
    expect(result.enabled).toBe(false);
    expect(result.notice).toBe(
      'systemd is not running on this system (a container?), so oxyctl-edge.service was not enabled or started. ' +
        'On the target system run: systemctl daemon-reload && systemctl enable --now oxyctl-edge.service',
    );
    expect(existsSync(join(root, EDGE_UNIT))).toBe(true);
    expect(uninstallService({ kind: 'edge' }, env).notice).toContain('systemd is not running');
    expect(calls).toEqual([]);
  });

  it('refuses without root on the live system, and reports a failing systemctl with its stderr', () => {
    const user = fakeEnv(true, 1000);
    expect(() => installService({ kind: 'edge', home }, user.env)).toThrow(/must be run as root \(sudo oxyctl service install …\)/);
    expect(existsSync(join(root, EDGE_UNIT))).toBe(false);

    const failing = fakeEnv(true, 0, '--now');
    try {
      installService({ kind: 'edge', home }, failing.env);
      expect.unreachable();
    } catch (err) {
      expect(isOxyError(err, 'OXY_ERR_SERVICE_SYSTEMCTL')).toBe(true);
      expect((err as Error).message).toBe('systemctl enable --now oxyctl-edge.service failed: Failed to --now unit');
    }
  });

  it('renders the packaged connector unit with the config file and a condition on it', () => {
    const text = unitText({ kind: 'connector', source: { configFile: '/etc/oxyctl/config.yml' }, origin: 'package' });
    const s = settings(text);
    expect(s.get('ExecStart')).toEqual(['/usr/bin/oxyctl tunnel run --config /etc/oxyctl/config.yml']);
    expect(s.get('ConditionPathExists')).toEqual(['/etc/oxyctl/config.yml']);
    expect(text).toMatch(/^# Shipped by the oxyctl package/);
  });

  it('quotes ExecStart words for systemd', () => {
    const text = unitText({ kind: 'connector', source: { configFile: '/srv/my tunnels/100%$x.yml' }, exec: ['/opt/node bin/node', '/x/run.js'] });
    expect(settings(text).get('ExecStart')).toEqual(['"/opt/node bin/node" /x/run.js tunnel run --config "/srv/my tunnels/100%%$$x.yml"']);
  });
});
