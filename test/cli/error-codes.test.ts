import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/core/errors.js';
import { oxy, oxyOk, tempHome } from '../helpers/cli.js';

/** What a script reads: `oxyctl … -o json` fails with one JSON document on stdout and a non-zero exit. */
function errorDocument(r: { code: number; stdout: string; stderr: string }): { code: string; message: string } {
  expect(r.code, r.stderr).not.toBe(0);
  const doc = JSON.parse(r.stdout) as { error: { code: string; message: string } };
  expect(Object.keys(doc)).toEqual(['error']);
  expect(Object.keys(ERROR_CODES)).toContain(doc.error.code);
  return doc.error;
}

describe('error codes on the command line', () => {
  let home: string;
  let cleanup: () => void;
  beforeEach(() => ({ home, cleanup } = tempHome()));
  afterEach(() => cleanup());

  it('-o json: five representative failures print {"error":{"code","message"}} on stdout and exit non-zero', async () => {
    const notFound = await oxy(home, ['vnet', 'delete', 'no-such-vnet', '-o', 'json']);
    expect(errorDocument(notFound)).toEqual({ code: 'OXY_ERR_VNET_NOT_FOUND', message: expect.stringContaining('no-such-vnet') });
    expect(notFound.stderr).toBe('');

    await oxyOk(home, ['vnet', 'add', 'office']);
    const exists = await oxy(home, ['vnet', 'add', 'office', '--output=json']);
    expect(errorDocument(exists)).toEqual({ code: 'OXY_ERR_VNET_EXISTS', message: 'virtual network with name office already exists' });

    const cidr = await oxy(home, ['tunnel', 'route', 'ip', 'add', '198.18.0.0/33', 'some-tunnel', '-o', 'json']);
    expect(errorDocument(cidr)).toMatchObject({ code: 'OXY_ERR_INVALID_CIDR' });

    const tunnel = await oxy(home, ['tunnel', 'delete', '-f', 'no-such-tunnel', '-o', 'json']);
    expect(errorDocument(tunnel)).toEqual({
      code: 'OXY_ERR_TUNNEL_NOT_FOUND',
      message: 'no-such-tunnel is neither the ID nor the name of any of your tunnels',
    });

    // A command line that does not parse is a document too (exit 2, as oclif's usage errors).
    const usage = await oxy(home, ['vnet', 'add', '--no-such-flag', 'x', '-o', 'json']);
    expect(usage.code).toBe(2);
    expect(errorDocument(usage)).toMatchObject({ code: 'OXY_ERR_USAGE', message: expect.stringContaining('--no-such-flag') });
  });

  it('-o yaml: the same document in YAML', async () => {
    const r = await oxy(home, ['vnet', 'delete', 'no-such-vnet', '-o', 'yaml']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^error:\n {2}code: OXY_ERR_VNET_NOT_FOUND\n {2}message: /);
  });

  it("text: cloudflared's message alone; the code follows it only with --loglevel debug", async () => {
    const plain = await oxy(home, ['vnet', 'delete', 'no-such-vnet']);
    expect(plain.code).toBe(1);
    expect(plain.stdout).toBe('');
    expect(plain.stderr).not.toContain('OXY_ERR');

    const info = await oxy(home, ['warp', 'connect', '--token', 'not-a-token', '--loglevel', 'info']);
    expect(info.code).toBe(1);
    expect(info.stderr.trim()).toMatch(/^Provided device token is not valid\.[^[]*$/);

    const debug = await oxy(home, ['warp', 'connect', '--token', 'not-a-token', '--loglevel', 'debug']);
    expect(debug.code).toBe(1);
    expect(debug.stderr.trim()).toMatch(/^Provided device token is not valid\..* \[OXY_ERR_INVALID_TOKEN\]$/);
  });

  it('warp connect: several --edge only with --token (a local device has one on-ramp), refused before anything is set up', async () => {
    const r = await oxy(home, ['warp', 'connect', '--edge', '/run/a.sock', '--edge', '/run/b.sock', '--route', '198.18.0.0/24', '--loglevel', 'debug']);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toMatch(/Several --edge are for a device with --token.* \[OXY_ERR_USAGE\]$/);
  });
});
