import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addVnet } from '../../../src/core/vnets.js';
import { curl, receivedHeaders, startOrigin, startProxyEdge, type Origin, type ProxyEdge } from './support.js';

// A hook that throws fails only its own connection, with a log line naming the hook.
let origin: Origin;
let bad: Origin;
let p: ProxyEdge;

beforeAll(async () => {
  origin = await startOrigin();
  bad = await startOrigin();
  p = await startProxyEdge({
    egress: {
      handleConnection(target) {
        if (target.port === bad.port) throw new Error('policy engine exploded');
        return undefined;
      },
    },
    http: {
      async handleProxyConnectResponse(_res, ctx) {
        if (ctx.vnet?.name === 'make-it-fail') throw new Error('response hook rejected');
      },
    },
  });
  // The vnet the async hook fails for (on-ramps refuse a vnet the store does not have).
  await addVnet(p.store, { name: 'office' }); // the first vnet is the default
  await addVnet(p.store, { name: 'make-it-fail' });
  await p.edge.view.reload();
});
afterAll(async () => {
  await p?.close();
  await origin?.close();
  await bad?.close();
});

describe('a throwing hook', () => {
  it('fails only its connection (502, proxy_internal_error) and logs the hook by name', async () => {
    // A tunnel that is open while another connection's hook throws.
    const socket = net.connect(p.proxyPort, '127.0.0.1');
    let got = '';
    socket.on('data', (d) => (got += d));
    socket.write(`CONNECT 127.0.0.1:${origin.port} HTTP/1.1\r\nHost: x\r\n\r\n`);
    await expect.poll(() => got).toMatch(/^HTTP\/1\.1 200/);

    const [failed, fine] = await Promise.all([
      curl(['-v', '-p', '-x', p.proxy, `http://127.0.0.1:${bad.port}/`]),
      curl(['-p', '-x', p.proxy, `http://127.0.0.1:${origin.port}/fine`]),
    ]);
    expect(failed.stderr).toMatch(/response 502/);
    expect(receivedHeaders(failed.stderr)).toContain('Proxy-Status: oxyctl; error=proxy_internal_error; details="hook egress.handleConnection failed"');
    expect(fine.code, fine.stderr).toBe(0);
    expect(p.logs.text()).toMatch(/ERR Hook failed; closing its connection connection=\d+ hook=egress\.handleConnection error="policy engine exploded"/);

    // The first tunnel still works.
    socket.write('GET /still HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    await new Promise((r) => socket.once('close', r));
    expect(got).toContain('"url":"/still"');
  });

  it('a rejected promise counts the same (async hook)', async () => {
    const r = await curl(['-v', '-p', '-x', p.proxy, '--proxy-header', 'Oxy-Vnet: make-it-fail', `http://127.0.0.1:${origin.port}/`]);
    expect(r.code).not.toBe(0);
    await expect.poll(() => p.logs.text()).toMatch(/hook=http\.handleProxyConnectResponse error="response hook rejected"/);
  });

  it('absolute-form requests too', async () => {
    const r = await curl(['-i', '-x', p.proxy, `http://127.0.0.1:${bad.port}/`]);
    expect(r.stdout).toMatch(/^HTTP\/1\.1 502/);
    expect(r.stdout).toMatch(/proxy-status: oxyctl; error=proxy_internal_error; details="hook egress.handleConnection failed"/i);
  });
});
