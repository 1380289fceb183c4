import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { oxy, oxyJson, oxyOk, parseTable, sharedHome, tempHome } from '../helpers/cli.js';

interface RouteDoc {
  id: string;
  network: string;
  tunnel_id: string;
  virtual_network_id: string;
  comment: string;
  tunnel_name: string;
  deleted_at: string | null;
}
interface Named {
  id: string;
  name: string;
}

let home: string;
let cleanup: () => void;
beforeEach(() => ({ home, cleanup } = tempHome()));
afterEach(() => cleanup());

/**
 * The "many private virtual networks" walkthrough: two vnets, two tunnels, 10.1.0.0/16 in both.
 * Run once per file (sharedHome): each test that starts from it gets the test's home replaced by a
 * copy of its store, and what its commands printed.
 */
async function walkthrough() {
  cleanup();
  let w: Awaited<ReturnType<typeof walkthroughIn>>;
  ({ home, cleanup, value: w } = await walkthroughHome());
  return w;
}
const walkthroughHome = sharedHome(walkthroughIn);

async function walkthroughIn(home: string) {
  await oxyOk(home, ['vnet', 'add', '--default', 'vnet-frankfurt', 'For London and Munich employees primarily']);
  await oxyOk(home, ['vnet', 'add', 'vnet-sydney', 'For APAC employees primarily']);
  await oxyOk(home, ['tunnel', 'create', 'tunnel-fra']);
  await oxyOk(home, ['tunnel', 'create', 'tunnel-syd']);
  const fra = await oxyOk(home, ['tunnel', 'route', 'ip', 'add', '--vnet', 'vnet-frankfurt', '10.1.0.0/16', 'tunnel-fra']);
  const syd = await oxyOk(home, ['tunnel', 'route', 'ip', 'add', '--vnet', 'vnet-sydney', '10.1.0.0/16', 'tunnel-syd']);
  const tunnels = await oxyJson<Named[]>(home, ['tunnel', 'list']);
  const vnets = await oxyJson<Named[]>(home, ['vnet', 'list']);
  const id = (list: Named[], name: string) => list.find((x) => x.name === name)!.id;
  return {
    fra,
    syd,
    tunnelFra: id(tunnels, 'tunnel-fra'),
    tunnelSyd: id(tunnels, 'tunnel-syd'),
    vnetFra: id(vnets, 'vnet-frankfurt'),
    vnetSyd: id(vnets, 'vnet-sydney'),
  };
}

describe('oxyctl tunnel route ip', () => {
  it('routes the same CIDR in two vnets and refuses it twice in one (code 1014)', async () => {
    const w = await walkthrough();
    expect(w.fra).toBe(`Successfully added route for 10.1.0.0/16 over tunnel ${w.tunnelFra}\n`);
    expect(w.syd).toBe(`Successfully added route for 10.1.0.0/16 over tunnel ${w.tunnelSyd}\n`);

    const again = await oxy(home, ['tunnel', 'route', 'ip', 'add', '--vnet', 'vnet-sydney', '10.1.0.0/16', 'tunnel-fra']);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toBe('API error: Failed to add route: code: 1014, reason: You already have a route defined for this exact IP subnet\n');
    // Without --vnet the default (vnet-frankfurt) is meant, which has it too.
    const dflt = await oxy(home, ['tunnel', 'route', 'ip', 'add', '10.1.0.0/16', 'tunnel-syd']);
    expect(dflt.stderr).toContain('code: 1014');

    const table = parseTable(await oxyOk(home, ['tunnel', 'route', 'ip', 'show']));
    expect(table.header).toEqual(['ID', 'NETWORK', 'VIRTUAL NET ID', 'COMMENT', 'TUNNEL ID', 'TUNNEL NAME', 'CREATED', 'DELETED']);
    expect(table.rows.map((r) => [r[1], r[2], r[5]]).sort()).toEqual(
      [
        ['10.1.0.0/16', w.vnetFra, 'tunnel-fra'],
        ['10.1.0.0/16', w.vnetSyd, 'tunnel-syd'],
      ].sort(),
    );
  });

  it('answers route ip get by vnet with the longest prefix', async () => {
    const w = await walkthrough();
    await oxyOk(home, ['tunnel', 'route', 'ip', 'add', '--vnet', 'vnet-sydney', '10.1.2.0/24', 'tunnel-fra', 'narrow']);
    const get = (ip: string, vnet?: string) => oxyJson<RouteDoc | null>(home, ['tunnel', 'route', 'ip', 'get', ...(vnet ? ['--vnet', vnet] : []), ip]);
    expect((await get('10.1.2.3'))?.tunnel_id).toBe(w.tunnelFra);
    expect(await get('10.1.2.3', 'vnet-sydney')).toMatchObject({ network: '10.1.2.0/24', comment: 'narrow' });
    expect(await get('10.1.3.3', 'vnet-sydney')).toMatchObject({ network: '10.1.0.0/16', tunnel_id: w.tunnelSyd });
    expect(await get('10.1.3.3', w.vnetSyd)).toMatchObject({ network: '10.1.0.0/16' });
    expect(await oxyOk(home, ['tunnel', 'route', 'ip', 'get', '10.9.9.9'])).toBe('No route matches the IP 10.9.9.9\n');
    const human = parseTable(await oxyOk(home, ['tunnel', 'route', 'ip', 'get', '--vnet', 'vnet-sydney', '10.1.2.3']));
    expect(human.rows[0][1]).toBe('10.1.2.0/24');
    const bad = await oxy(home, ['tunnel', 'route', 'ip', 'get', '10.1.2']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('Invalid IP 10.1.2');
  });

  it('refuses a CIDR with host bits set, naming the network meant', async () => {
    await oxyOk(home, ['tunnel', 'create', 't']);
    const r = await oxy(home, ['tunnel', 'route', 'ip', 'add', '10.1.2.3/16', 't']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('did you mean 10.1.0.0/16?');
    const v6 = await oxy(home, ['tunnel', 'route', 'ip', 'add', '2001:db8::1/32', 't']);
    expect(v6.stderr).toContain('did you mean 2001:db8::/32?');
    const junk = await oxy(home, ['tunnel', 'route', 'ip', 'add', '10.1.0.0/33', 't']);
    expect(junk.code).not.toBe(0);
    expect(junk.stderr).toContain('Invalid network CIDR');
    expect(await oxyJson<unknown[]>(home, ['tunnel', 'route', 'ip', 'show'])).toEqual([]);
  });

  it('routes IPv6, creating a default vnet when none exists', async () => {
    await oxyOk(home, ['tunnel', 'create', 't']);
    await oxyOk(home, ['tunnel', 'route', 'ip', 'add', '2001:DB8:0:0::/48', 't', 'v6 lab']);
    const [route] = await oxyJson<RouteDoc[]>(home, ['tunnel', 'route', 'ip', 'show']);
    expect(route).toMatchObject({ network: '2001:db8::/48', comment: 'v6 lab', tunnel_name: 't' });
    const vnets = await oxyJson<(Named & { is_default_network: boolean })[]>(home, ['vnet', 'list']);
    expect(vnets).toMatchObject([{ name: 'default', is_default_network: true, id: route.virtual_network_id }]);
    expect((await oxyJson<RouteDoc>(home, ['tunnel', 'route', 'ip', 'get', '2001:db8:0:1::5'])).id).toBe(route.id);
    expect(await oxyJson(home, ['tunnel', 'route', 'ip', 'get', '2001:db9::1'])).toBeNull();
  });

  it('filters the routing table', async () => {
    const w = await walkthrough();
    await oxyOk(home, ['tunnel', 'route', 'ip', 'add', '--vnet', 'vnet-sydney', '10.1.2.0/24', 'tunnel-fra', 'narrow']);
    await oxyOk(home, ['tunnel', 'route', 'ip', 'add', '10.0.0.0/8', 'tunnel-fra', 'wide']);
    await oxyOk(home, ['tunnel', 'route', 'ip', 'add', '2001:db8::/32', 'tunnel-syd']);
    const nets = async (...flags: string[]) =>
      (await oxyJson<RouteDoc[]>(home, ['tunnel', 'route', 'ip', 'list', ...flags])).map((r) => `${r.network}@${r.tunnel_name}`).sort();

    expect(await nets('--filter-tunnel-id', w.tunnelSyd)).toEqual(['10.1.0.0/16@tunnel-syd', '2001:db8::/32@tunnel-syd']);
    expect(await nets('--filter-vnet-id', w.vnetSyd)).toEqual(['10.1.0.0/16@tunnel-syd', '10.1.2.0/24@tunnel-fra']);
    expect(await nets('--filter-comment-is', 'wide')).toEqual(['10.0.0.0/8@tunnel-fra']);
    expect(await nets('--nsub', '10.1.0.0/16')).toEqual(['10.1.0.0/16@tunnel-fra', '10.1.0.0/16@tunnel-syd', '10.1.2.0/24@tunnel-fra']);
    expect(await nets('--filter-network-is-subset-of', '10.1.2.0/23')).toEqual(['10.1.2.0/24@tunnel-fra']);
    expect(await nets('--nsup', '10.1.2.0/24')).toEqual([
      '10.0.0.0/8@tunnel-fra',
      '10.1.0.0/16@tunnel-fra',
      '10.1.0.0/16@tunnel-syd',
      '10.1.2.0/24@tunnel-fra',
    ]);
    expect(await nets('--filter-network-is-superset-of', '2001:db8:1::/48')).toEqual(['2001:db8::/32@tunnel-syd']);
    expect(await nets('--filter-is-deleted')).toEqual([]);
  });

  it('deletes by CIDR within a vnet or by ID', async () => {
    await walkthrough();
    // No terminal: no prompt and no --yes needed, as cloudflared.
    const out = await oxyOk(home, ['tunnel', 'route', 'ip', 'delete', '--vnet', 'vnet-sydney', '10.1.0.0/16']);
    expect(out).toMatch(/^Successfully deleted route with ID [0-9a-f-]{36}\n$/);
    const left = await oxyJson<RouteDoc[]>(home, ['tunnel', 'route', 'ip', 'show']);
    expect(left.map((r) => r.tunnel_name)).toEqual(['tunnel-fra']);
    await oxyOk(home, ['tunnel', 'route', 'ip', 'delete', '-y', left[0].id]);
    expect(await oxyJson<RouteDoc[]>(home, ['tunnel', 'route', 'ip', 'show'])).toEqual([]);
    expect(await oxyJson<RouteDoc[]>(home, ['tunnel', 'route', 'ip', 'show', '--filter-is-deleted'])).toHaveLength(2);
    const gone = await oxy(home, ['tunnel', 'route', 'ip', 'delete', '-y', '10.1.0.0/16']);
    expect(gone.code).not.toBe(0);
    expect(gone.stderr).toContain('There is no route for 10.1.0.0/16 in virtual network vnet-frankfurt');
    // A deleted route's network can be routed again.
    await oxyOk(home, ['tunnel', 'route', 'ip', 'add', '10.1.0.0/16', 'tunnel-syd']);
  });
});

describe('oxyctl tunnel route dns', () => {
  it('maps a hostname to a tunnel, refusing another tunnel unless --overwrite-dns', async () => {
    await oxyOk(home, ['tunnel', 'create', 'a']);
    await oxyOk(home, ['tunnel', 'create', 'b']);
    expect(await oxyOk(home, ['tunnel', 'route', 'dns', 'a', 'App.Example.com'])).toMatch(
      /^Added CNAME app\.example\.com which will route to this tunnel tunnelID=[0-9a-f-]{36}\n$/,
    );
    const clash = await oxy(home, ['tunnel', 'route', 'dns', 'b', 'app.example.com']);
    expect(clash.code).not.toBe(0);
    expect(clash.stderr).toContain('code: 1003');
    const moved = await oxyJson<{ tunnel_name: string }>(home, ['tunnel', 'route', 'dns', '--overwrite-dns', 'b', 'app.example.com']);
    expect(moved.tunnel_name).toBe('b');
    await oxyOk(home, ['tunnel', 'route', 'dns', 'a', '*.example.com']);
    const bad = await oxy(home, ['tunnel', 'route', 'dns', 'a', 'bad_host!']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('bad_host! is not a valid hostname');
  });
});
