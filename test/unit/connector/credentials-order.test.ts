/**
 * Where `tunnel run` takes the tunnel's identity from, in cloudflared's order: --token (or
 * --token-file), --credentials-contents, --credentials-file, the config's credentials-file,
 * `<TunnelID>.json` next to the config file, then the data directory.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/engine/connector/config.js';
import { resolveCredentials } from '../../../src/engine/connector/run.js';

const ID = (n: number) => `00000000-0000-4000-8000-00000000000${n}`;
const creds = (n: number) => ({ AccountTag: 'acct', TunnelSecret: Buffer.alloc(32, n).toString('base64'), TunnelID: ID(n) });
const token = (n: number) => Buffer.from(JSON.stringify({ a: 'acct', s: creds(n).TunnelSecret, t: ID(n) })).toString('base64');

let dir: string;
beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'oxy-creds-'))));
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('tunnel run credentials, in cloudflared order', () => {
  it('--token-file, then --credentials-contents, then --credentials-file, then <TunnelID>.json next to the config', async () => {
    const configFile = join(dir, 'config.yml');
    writeFileSync(join(dir, `${ID(4)}.json`), JSON.stringify(creds(4))); // exactly cloudflared's fields
    writeFileSync(join(dir, 'three.json'), JSON.stringify(creds(3)));
    writeFileSync(join(dir, 'token'), `${token(1)}\n`);
    const config = parseConfig({ tunnel: ID(4) }, configFile);
    const base = { home: join(dir, 'home'), config };
    expect((await resolveCredentials({ ...base, tokenFile: join(dir, 'token'), credentialsContents: JSON.stringify(creds(2)) })).creds.TunnelID).toBe(ID(1));
    expect(
      (await resolveCredentials({ ...base, credentialsContents: JSON.stringify(creds(2)), credentialsFile: join(dir, 'three.json') })).creds.TunnelID,
    ).toBe(ID(2));
    expect((await resolveCredentials({ ...base, credentialsFile: join(dir, 'three.json') })).creds.TunnelID).toBe(ID(3));
    const fromConfigDir = (await resolveCredentials(base)).creds;
    expect(fromConfigDir).toEqual({ ...creds(4), Endpoint: '' });
  });

  it('says what is wrong with --credentials-contents and an unreadable --token-file', async () => {
    await expect(resolveCredentials({ home: dir, credentialsContents: '{"TunnelID":1}' })).rejects.toThrow(
      '--credentials-contents must hold TunnelID and TunnelSecret',
    );
    await expect(resolveCredentials({ home: dir, tokenFile: join(dir, 'missing') })).rejects.toThrow(`Cannot read the token file ${join(dir, 'missing')}`);
  });
});
