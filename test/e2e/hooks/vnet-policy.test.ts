import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addVnet } from '../../../src/core/vnets.js';
import { Store } from '../../../src/store/index.js';
import { tempHome } from '../../helpers/cli.js';
import { curl, receivedHeaders, startOrigin, startProxyEdge, type Origin, type ProxyEdge } from './support.js';

// examples/vnet-policy.js: the same address reachable from one vnet and not from another.
// vnet "lab" may reach 127.0.0.1/32 only, vnet "guest" may not reach it, "office" (the
// default) has no rules. Traffic goes only to a loopback origin.
let p: ProxyEdge;
let origin: Origin;
let cleanup: () => void;
const through = (vnet: string | undefined, path: string, host = '127.0.0.1') =>
  curl(['-v', '-p', '-x', p.proxy, ...(vnet ? ['--proxy-header', `Oxy-Vnet: ${vnet}`] : []), `http://${host}:${origin.port}${path}`]);

beforeAll(async () => {
  process.env.OXY_VNET_POLICY = JSON.stringify({ lab: { allow: ['127.0.0.1/32'] }, guest: { deny: ['127.0.0.1/32'] } });
  const temp = tempHome();
  cleanup = temp.cleanup;
  const store = await Store.open(temp.home);
  for (const name of ['office', 'lab', 'guest']) await addVnet(store, { name });
  await store.close();
  origin = await startOrigin();
  p = await startProxyEdge('vnet-policy.js', temp.home);
});
afterAll(async () => {
  delete process.env.OXY_VNET_POLICY;
  await p?.close();
  await origin?.close();
  cleanup?.();
});

describe('examples/vnet-policy.js: a CIDR allowed in one vnet, denied in another', () => {
  it('vnet lab reaches 127.0.0.1, its allowed CIDR', async () => {
    const r = await through('lab', '/from-lab');
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).url).toBe('/from-lab');
  });

  it('vnet guest is refused the same address: 403, Proxy-Status naming the vnet, nothing reaches the origin', async () => {
    const r = await through('guest', '/from-guest');
    expect(r.stderr).toMatch(/response 403/);
    expect(receivedHeaders(r.stderr).join('\n')).toMatch(
      /^Proxy-Status: oxyctl; error=destination_ip_prohibited; details="127\.0\.0\.1 is not reachable from virtual network guest"/m,
    );
    expect(origin.seen.some((s) => s.url === '/from-guest')).toBe(false);
  });

  it('lab reaches nothing outside its allow list; the default vnet (no rules) gets the engine default', async () => {
    expect((await through('lab', '/elsewhere', '127.0.0.2')).stderr).toMatch(/response 403/);
    const r = await through(undefined, '/from-office');
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).url).toBe('/from-office');
  });
});
