import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openTestStore, testBackend, oxy, oxyJson, oxyOk, parseTable, tempHome } from '../helpers/cli.js';

interface TunnelDoc {
  id: string;
  name: string;
  created_at: string;
  deleted_at: string | null;
  connections: { id: string; colo_name: string; connector_id: string; origin_ip: string }[];
}

interface InfoDoc {
  id: string;
  name: string;
  createdAt: string;
  conns: { id: string; arch: string; version: string; conns: { colo_name: string; origin_ip: string; is_pending_reconnect: boolean }[] }[];
}

let home: string;
let cleanup: () => void;
beforeEach(() => ({ home, cleanup } = tempHome()));
afterEach(() => cleanup());

/** What the edge records when a connector registers, written straight into the store. */
async function recordConnection(tunnelId: string, connIndex: number, edgeLocation = 'fra') {
  const store = await openTestStore(home);
  await store.tunnels.recordConnection({
    id: crypto.randomUUID(),
    tunnelId,
    connectorId: '11111111-2222-4333-8444-555555555555',
    connIndex,
    protocol: 'http2',
    originIp: '198.18.0.7',
    edgeLocation,
    clientVersion: '0.1.0',
    arch: 'linux_amd64',
    openedAt: '2026-01-01T00:00:00Z',
  });
  await store.close();
}

describe('oxyctl tunnel create', () => {
  it('writes the credentials file atomically with mode 0400 and prints the tunnel id', async () => {
    const out = await oxyOk(home, ['tunnel', 'create', 'example']);
    const id = /Created tunnel example with id ([0-9a-f-]{36})\n$/.exec(out)?.[1];
    expect(id).toBeDefined();
    const file = join(home, `${id}.json`);
    expect(statSync(file).mode & 0o777).toBe(0o400);
    const creds = JSON.parse(readFileSync(file, 'utf8'));
    expect(Object.keys(creds).sort()).toEqual(['AccountTag', 'Endpoint', 'TunnelID', 'TunnelSecret']);
    expect(creds.TunnelID).toBe(id);
    expect(Buffer.from(creds.TunnelSecret, 'base64').length).toBeGreaterThanOrEqual(32);
    // The SQLite store holds tunnel secrets: owner-only (PostgreSQL's access is the server's).
    if (testBackend === 'sqlite') expect(statSync(join(home, 'oxy.db')).mode & 0o077).toBe(0);
  });

  it('takes --secret and --credentials-file, and -o json', async () => {
    const secret = Buffer.alloc(40, 7).toString('base64');
    const file = join(home, 'custom.json');
    const doc = await oxyJson<TunnelDoc & { credentials_file: string }>(home, ['tunnel', 'create', '--secret', secret, '--credentials-file', file, 'ex']);
    expect(doc).toMatchObject({ name: 'ex', credentials_file: file, connections: [] });
    expect(JSON.parse(readFileSync(file, 'utf8')).TunnelSecret).toBe(secret);
  });

  it('refuses UUID names, duplicate names, short secrets and an existing credentials file, recording nothing', async () => {
    const uuid = await oxy(home, ['tunnel', 'create', '0dd7fccc-0a06-42a5-9bbf-a6cc9c44503b']);
    expect(uuid.code).not.toBe(0);
    expect(uuid.stderr).toContain('cannot be a UUID');

    await oxyOk(home, ['tunnel', 'create', 'dup']);
    const dup = await oxy(home, ['tunnel', 'create', 'dup']);
    expect(dup.code).not.toBe(0);
    expect(dup.stderr).toContain('tunnel with name already exists');

    const short = await oxy(home, ['tunnel', 'create', '--secret', Buffer.alloc(16).toString('base64'), 'short']);
    expect(short.code).not.toBe(0);
    expect(short.stderr).toContain('--secret must be base64 of at least 32 bytes (got 16)');

    const taken = join(home, 'taken.json');
    writeFileSync(taken, 'precious');
    const exists = await oxy(home, ['tunnel', 'create', '--credentials-file', taken, 'other']);
    expect(exists.code).not.toBe(0);
    expect(exists.stderr).toContain('already exists');
    expect(readFileSync(taken, 'utf8')).toBe('precious');

    expect((await oxyJson<TunnelDoc[]>(home, ['tunnel', 'list'])).map((t) => t.name)).toEqual(['dup']);
  });
});

describe('oxyctl tunnel list / info', () => {
  it('lists with cloudflared columns, filters and sorts', async () => {
    for (const name of ['prod-b', 'prod-a', 'dev-x']) await oxyOk(home, ['tunnel', 'create', name]);
    const all = await oxyJson<TunnelDoc[]>(home, ['tunnel', 'list']);
    expect(all.map((t) => t.name)).toEqual(['dev-x', 'prod-a', 'prod-b']);
    const prodA = all[1];
    await recordConnection(prodA.id, 0, 'fra');
    await recordConnection(prodA.id, 1, 'fra');
    await recordConnection(prodA.id, 2, 'lhr');

    const table = parseTable(await oxyOk(home, ['tunnel', 'list']));
    expect(table.header).toEqual(['ID', 'NAME', 'CREATED', 'CONNECTIONS']);
    expect(table.rows.find((r) => r[1] === 'prod-a')?.[3]).toBe('2xfra, 1xlhr');

    const names = async (...flags: string[]) => (await oxyJson<TunnelDoc[]>(home, ['tunnel', 'list', ...flags])).map((t) => t.name);
    expect(await names('--name-prefix', 'prod-')).toEqual(['prod-a', 'prod-b']);
    expect(await names('--exclude-name-prefix', 'prod-')).toEqual(['dev-x']);
    expect(await names('--name', 'prod-b')).toEqual(['prod-b']);
    expect(await names('--id', prodA.id)).toEqual(['prod-a']);
    expect(await names('--sort-by', 'numConnections', '--invert-sort')).toEqual(['prod-a', 'prod-b', 'dev-x']);
    expect(await names('--sort-by', 'name', '--invert-sort')).toEqual(['prod-b', 'prod-a', 'dev-x']);
    expect(await oxyOk(home, ['tunnel', 'list', '--name', 'nope'])).toBe(
      "No tunnels were found for the given filter flags. You can use 'oxyctl tunnel create' to create a tunnel.\n",
    );
  });

  it('shows connections in info, and cleanup forgets them', async () => {
    await oxyOk(home, ['tunnel', 'create', 't']);
    const [t] = await oxyJson<TunnelDoc[]>(home, ['tunnel', 'list']);
    expect(await oxyOk(home, ['tunnel', 'info', 't'])).toContain(`Your tunnel ${t.id} does not have any active connection.`);
    recordConnection(t.id, 0);
    recordConnection(t.id, 1);
    recordConnection(t.id, 2, 'lhr');
    // cloudflared's document: createdAt, and conns per connector, each with its conns.
    const info = await oxyJson<InfoDoc>(home, ['tunnel', 'info', t.id]);
    expect(Object.keys(info)).toEqual(['id', 'name', 'createdAt', 'conns']);
    expect(info.conns).toHaveLength(1);
    expect(info.conns[0]).toMatchObject({ id: '11111111-2222-4333-8444-555555555555', arch: 'linux_amd64', version: '0.1.0' });
    expect(info.conns[0].conns.map((c) => c.colo_name)).toEqual(['fra', 'fra', 'lhr']);
    expect(info.conns[0].conns[0]).toMatchObject({ origin_ip: '198.18.0.7', is_pending_reconnect: false });
    // One row per connector; EDGE counts its connections per location.
    const { header, rows } = parseTable((await oxyOk(home, ['tunnel', 'info', 't'])).split('\n\n')[1]);
    expect(header).toEqual(['CONNECTOR ID', 'CREATED', 'ARCHITECTURE', 'VERSION', 'ORIGIN IP', 'EDGE']);
    expect(rows).toEqual([['11111111-2222-4333-8444-555555555555', '2026-01-01T00:00:00Z', 'linux_amd64', '0.1.0', '198.18.0.7', '2xfra, 1xlhr']]);

    expect(await oxyOk(home, ['tunnel', 'cleanup', 't'])).toContain('Cleaned up 3 connection(s) of tunnel t');
    expect((await oxyJson<InfoDoc>(home, ['tunnel', 'info', 't'])).conns).toEqual([]);
    const missing = await oxy(home, ['tunnel', 'info', 'ghost']);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain('ghost is neither the ID nor the name of any of your tunnels');
  });
});

describe('oxyctl tunnel delete', () => {
  it('needs confirmation, refuses tunnels with connections or routes, and --force removes the routes', async () => {
    await oxyOk(home, ['tunnel', 'create', 'a']);
    await oxyOk(home, ['tunnel', 'create', 'b']);
    const [a] = await oxyJson<TunnelDoc[]>(home, ['tunnel', 'list', '--name', 'a']);
    await oxyOk(home, ['tunnel', 'route', 'ip', 'add', '10.1.0.0/16', 'a']);

    // Without a terminal, as cloudflared: no prompt, no failure (the routed tunnel is still refused).
    const noTty = await oxy(home, ['tunnel', 'delete', 'a']);
    expect(noTty.code).not.toBe(0);
    expect(noTty.stderr).toContain('Cannot delete tunnel a because 1 IP route(s) point to it');

    const routed = await oxy(home, ['tunnel', 'delete', '--yes', 'a', 'b']);
    expect(routed.code).not.toBe(0);
    expect(routed.stderr).toContain('Cannot delete tunnel a because 1 IP route(s) point to it');
    // All or nothing: b was not deleted either.
    expect(await oxyJson<TunnelDoc[]>(home, ['tunnel', 'list'])).toHaveLength(2);

    await recordConnection(a.id, 0);
    const active = await oxy(home, ['tunnel', 'delete', '--yes', 'a']);
    expect(active.stderr).toContain('has active connections');

    expect(await oxyOk(home, ['tunnel', 'delete', '--force', 'a', 'b'])).toMatch(/Deleted tunnel a with id .*\nDeleted tunnel b with id /);
    expect(await oxyJson<TunnelDoc[]>(home, ['tunnel', 'list'])).toEqual([]);
    expect(await oxyJson<unknown[]>(home, ['tunnel', 'route', 'ip', 'show'])).toEqual([]);
    const deleted = await oxyJson<TunnelDoc[]>(home, ['tunnel', 'list', '--show-deleted']);
    expect(deleted.map((t) => t.name).sort()).toEqual(['a', 'b']);
    expect(deleted.every((t) => t.deleted_at)).toBe(true);
    expect(() => statSync(join(home, `${a.id}.json`))).toThrow();
  });
});

describe('oxyctl tunnel token', () => {
  it('prints base64 of {a,s,t} matching the credentials file, or writes the file', async () => {
    await oxyOk(home, ['tunnel', 'create', 't']);
    const [t] = await oxyJson<TunnelDoc[]>(home, ['tunnel', 'list']);
    const creds = JSON.parse(readFileSync(join(home, `${t.id}.json`), 'utf8'));
    const token = JSON.parse(Buffer.from((await oxyOk(home, ['tunnel', 'token', 't'])).trim(), 'base64').toString());
    expect(token).toMatchObject({ a: creds.AccountTag, s: creds.TunnelSecret, t: t.id });

    const file = join(home, 'copy.json');
    await oxyOk(home, ['tunnel', 'token', '--credentials-file', file, t.id]);
    expect(statSync(file).mode & 0o777).toBe(0o400);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toMatchObject({ TunnelID: t.id, TunnelSecret: creds.TunnelSecret });
  });
});

describe('oxyctl version', () => {
  it('answers version, version --short, --version and -v as cloudflared does', async () => {
    expect(await oxyOk(home, ['version'])).toMatch(/^oxyctl version \d+\.\d+\.\d+ \(node v/);
    expect(await oxyOk(home, ['version', '--short'])).toMatch(/^\d+\.\d+\.\d+\n$/);
    expect(await oxyOk(home, ['-v'])).toBe(await oxyOk(home, ['--version']));
  });
});

describe('cloudflared commands with no meaning here', () => {
  it('tunnel login and update succeed and say why nothing happened', async () => {
    const login = await oxy(home, ['tunnel', 'login']);
    expect(login).toMatchObject({ code: 0, stdout: '' });
    expect(login.stderr).toContain('oxyctl needs no login');
    const update = await oxy(home, ['update']);
    expect(update).toMatchObject({ code: 0, stdout: '' });
    expect(update.stderr).toContain('oxyctl does not update itself');
  });
});
