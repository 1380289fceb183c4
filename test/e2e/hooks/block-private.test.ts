import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { curl, startOrigin, startProxyEdge, type Origin, type ProxyEdge } from './support.js';

// examples/block-private.js with OXY_PRIVATE_CIDRS narrowed so that 127.0.0.2 (not
// 127.0.0.1) counts as private: one loopback address blocked, another allowed.
let p: ProxyEdge;
let origin: Origin;

beforeAll(async () => {
  process.env.OXY_PRIVATE_CIDRS = '10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,127.0.0.2/32';
  origin = await startOrigin();
  p = await startProxyEdge('block-private.js');
});
afterAll(async () => {
  delete process.env.OXY_PRIVATE_CIDRS;
  await p?.close();
  await origin?.close();
});

describe('examples/block-private.js', () => {
  it('blocks the private ranges at egress', async () => {
    for (const url of ['http://10.0.0.1/', 'http://192.168.1.1:8080/', 'http://172.20.0.1/', `http://127.0.0.2:${origin.port}/`]) {
      const r = await curl(['-p', '-x', p.proxy, url]);
      expect(r.stderr, url).toMatch(/response 403/);
    }
  });

  it('lets everything else through with the default egress', async () => {
    const r = await curl(['-p', '-x', p.proxy, `http://127.0.0.1:${origin.port}/ok`]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).url).toBe('/ok');
  });
});
