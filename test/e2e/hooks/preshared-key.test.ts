import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { curl, receivedHeaders, startOrigin, startProxyEdge, type Origin, type ProxyEdge } from './support.js';

// examples/preshared-key.js: private ranges (loopback included) are blocked unless the
// client sends `Proxy-Authorization: Preshared <key>`. Traffic goes only to a loopback origin.
let p: ProxyEdge;
let origin: Origin;
const KEY = 'Proxy-Authorization: Preshared test-key';

beforeAll(async () => {
  process.env.OXY_PRESHARED_KEY = 'test-key';
  origin = await startOrigin();
  p = await startProxyEdge('preshared-key.js');
});
afterAll(async () => {
  delete process.env.OXY_PRESHARED_KEY;
  await p?.close();
  await origin?.close();
});

describe('examples/preshared-key.js through curl -p -x (CONNECT)', () => {
  it('blocks a private destination without the key: 403 and Proxy-Status error', async () => {
    const r = await curl(['-v', '-p', '-x', p.proxy, `http://127.0.0.1:${origin.port}/secret`]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/CONNECT tunnel failed, response 403/);
    expect(receivedHeaders(r.stderr).join('\n')).toMatch(/^Proxy-Status: oxyctl; error=destination_ip_prohibited; details=".*127\.0\.0\.1 is private/m);
    expect(origin.seen.some((s) => s.url === '/secret')).toBe(false);
  });

  it('allows it with the key, for that connection', async () => {
    const r = await curl(['-p', '-x', p.proxy, '--proxy-header', KEY, `http://127.0.0.1:${origin.port}/unlocked`]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).url).toBe('/unlocked');
  });

  it('refuses a wrong key', async () => {
    const r = await curl(['-p', '-x', p.proxy, '--proxy-header', 'Proxy-Authorization: Preshared nope', `http://127.0.0.1:${origin.port}/`]);
    expect(r.stderr).toMatch(/response 403/);
  });

  it('blocks other private ranges without sending any traffic (store/policy data only)', async () => {
    const r = await curl(['-p', '-x', p.proxy, 'http://10.1.2.3:80/']);
    expect(r.stderr).toMatch(/response 403/);
  });
});

describe('examples/preshared-key.js with absolute-form requests (curl -x without -p)', () => {
  it('blocks without the key and allows with it; the key is not forwarded to the origin', async () => {
    const blocked = await curl(['-i', '-x', p.proxy, `http://127.0.0.1:${origin.port}/plain`]);
    expect(blocked.stdout).toMatch(/^HTTP\/1\.1 403/);
    expect(blocked.stdout).toMatch(/proxy-status: oxyctl; error=destination_ip_prohibited/i);
    const allowed = await curl(['-x', p.proxy, '--proxy-header', KEY, `http://127.0.0.1:${origin.port}/plain`]);
    expect(allowed.code, allowed.stderr).toBe(0);
    const seen = JSON.parse(allowed.stdout);
    expect(seen.url).toBe('/plain');
    expect(seen.headers['proxy-authorization']).toBeUndefined();
  });
});
