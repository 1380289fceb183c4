import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { curl, receivedHeaders, startOrigin, startProxyEdge, type Origin, type ProxyEdge } from './support.js';

// examples/proxy-status.js: RFC 9209 next-hop from handleConnectionEstablished → handleProxyConnectResponse.
let p: ProxyEdge;
let origin: Origin;

beforeAll(async () => {
  origin = await startOrigin();
  p = await startProxyEdge('proxy-status.js');
});
afterAll(async () => {
  await p?.close();
  await origin?.close();
});

describe('examples/proxy-status.js', () => {
  it('adds Proxy-Status: next-hop with the address connected to, on the CONNECT response', async () => {
    const r = await curl(['-v', '-p', '-x', p.proxy, `http://127.0.0.1:${origin.port}/`]);
    expect(r.code, r.stderr).toBe(0);
    const headers = receivedHeaders(r.stderr);
    // The first response curl prints is the proxy's answer to CONNECT.
    expect(headers[0]).toMatch(/^HTTP\/1\.1 200 Connection Established/);
    expect(headers).toContain(`Proxy-Status: oxyctl; next-hop="127.0.0.1:${origin.port}"`);
  });

  it('names the resolved address when the client asked for a hostname', async () => {
    const r = await curl(['-v', '-p', '-x', p.proxy, `http://localhost:${origin.port}/`]);
    expect(r.code, r.stderr).toBe(0);
    expect(receivedHeaders(r.stderr).find((h) => h.startsWith('Proxy-Status'))).toMatch(/^Proxy-Status: oxyctl; next-hop="(127\.0\.0\.1|\[::1\]):\d+"$/);
  });

  it('adds nothing when the connection failed (no next hop)', async () => {
    const closed = await startOrigin();
    const port = closed.port;
    await closed.close();
    const r = await curl(['-v', '-p', '-x', p.proxy, `http://127.0.0.1:${port}/`]);
    expect(r.stderr).toMatch(/response 502/);
    const status = receivedHeaders(r.stderr).filter((h) => h.startsWith('Proxy-Status'));
    expect(status).toHaveLength(1);
    expect(status[0]).toMatch(/error=connection_refused/);
  });
});
