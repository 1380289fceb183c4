import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { curl, logSink, startOrigin, startProxyEdge, startTunnelEdge, TEST_ALLOW, type Origin, type ProxyEdge, type TunnelEdge } from './support.js';
import { ConnectProxy } from '../../../src/engine/edge/connect-proxy.js';
import { parseAllowEntry } from '../../../src/engine/edge/proxy-policy.js';
import { HOOK_ORDER, HookRunner, HookTrace, expectedOrder, orderViolations, type Hooks } from '../../../src/engine/hooks/index.js';
import { Egress } from '../../../src/engine/edge/pipeline/index.js';
import { encodeProxyV2 } from '../../../src/engine/protocol/proxy-protocol.js';

/**
 * An app implementing every hook of the forward proxy; the recorded trace must be the
 * documented order (hooks/order.ts). An engine change that reorders hooks fails here.
 */
function everyHook(): Hooks<{ seen: string[] }> {
  const note =
    (name: string) =>
    (...args: unknown[]) => {
      (args.at(-1) as { ext: { seen: string[] } }).ext.seen.push(name);
      return undefined;
    };
  return {
    newCtx: () => ({ seen: [] }),
    proxyProtocol: { handleConnection: note('proxyProtocol.handleConnection') },
    ingress: { handleConnection: note('ingress.handleConnection'), handleConnectionClose: note('ingress.handleConnectionClose') },
    http: {
      handleProxyConnectRequest: note('http.handleProxyConnectRequest'),
      handleProxyConnectResponse: note('http.handleProxyConnectResponse'),
      handleRequest: note('http.handleRequest'),
      handleResponse: note('http.handleResponse'),
    },
    egress: {
      dnsResolveOverride: async () => ['127.0.0.1'],
      handleUpstreamIps: note('egress.handleUpstreamIps'),
      handleConnection: note('egress.handleConnection'),
      tcpConnectOverride: note('egress.tcpConnectOverride'),
      handleConnectionEstablished: note('egress.handleConnectionEstablished'),
    },
    tunnel: {
      shouldInterceptHttps: () => false,
      appTunnelPipeline: (client, upstream) => {
        client.pipe(upstream);
        upstream.pipe(client);
      },
    },
  };
}

let origin: Origin;
let p: ProxyEdge;

beforeAll(async () => {
  origin = await startOrigin();
  p = await startProxyEdge(everyHook());
});
afterAll(async () => {
  await p?.close();
  await origin?.close();
});

describe('documented hook order', () => {
  it('CONNECT (curl -p -x, hostname target): every hook but the PROXY header one, in the documented order', async () => {
    p.trace.clear();
    const r = await curl(['-p', '-x', p.proxy, `http://localhost:${origin.port}/`]);
    expect(r.code, r.stderr).toBe(0);
    const entry = await p.trace.waitFor((e) => e.onramp === 'connect-proxy');
    expect(orderViolations('connect-proxy', entry.hooks)).toEqual([]);
    expect(entry.hooks).toEqual(HOOK_ORDER['connect-proxy'].filter((h) => h !== 'proxyProtocol.handleConnection'));
  });

  it('absolute-form request (curl -x): the http-proxy order', async () => {
    p.trace.clear();
    const r = await curl(['-x', p.proxy, `http://localhost:${origin.port}/x`]);
    expect(r.code, r.stderr).toBe(0);
    const entry = await p.trace.waitFor((e) => e.onramp === 'http-proxy');
    expect(entry.hooks).toEqual(HOOK_ORDER['http-proxy'].filter((h) => h !== 'proxyProtocol.handleConnection'));
  });

  it('only implemented hooks fire: an IP literal skips DNS', async () => {
    p.trace.clear();
    await curl(['-p', '-x', p.proxy, `http://127.0.0.1:${origin.port}/`]);
    const entry = await p.trace.waitFor();
    expect(entry.hooks).not.toContain('egress.dnsResolveOverride');
    expect(orderViolations('connect-proxy', entry.hooks)).toEqual([]);
  });

  it('a PROXY v2 connection: proxyProtocol.handleConnection right after newCtx, with the TLVs', async () => {
    const logs = logSink();
    const trace = new HookTrace();
    const hooks = everyHook();
    let tlv: string | undefined;
    let client: string | undefined;
    hooks.proxyProtocol = {
      handleConnection(header, ctx) {
        tlv = header.tlvs.find((t) => t.type === 0xe0)?.value.toString();
        client = `${ctx.client.address}:${ctx.client.port}`;
        ctx.ext.seen.push('proxyProtocol.handleConnection');
      },
    };
    const runner = new HookRunner(hooks as Hooks<unknown>, { log: logs.log, trace });
    const proxy = await ConnectProxy.listen({
      listen: '127.0.0.1:0',
      runner,
      egress: new Egress({ runner }),
      log: logs.log,
      proxyProtocol: true,
      allow: TEST_ALLOW.map(parseAllowEntry),
    });
    try {
      const socket = net.connect(proxy.address.port, '127.0.0.1');
      await new Promise((r) => socket.once('connect', r));
      socket.write(
        encodeProxyV2({
          source: { address: '198.18.0.7', port: 40000 },
          destination: { address: '198.18.0.1', port: 3128 },
          tlvs: [{ type: 0xe0, value: Buffer.from('tenant-a') }],
        }),
      );
      socket.write(`CONNECT 127.0.0.1:${origin.port} HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\n\r\n`);
      let got = '';
      socket.on('data', (d) => (got += d));
      await expect.poll(() => got).toMatch(/^HTTP\/1\.1 200/);
      socket.write('GET /pp HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      await new Promise((r) => socket.once('close', r));
      expect(got).toContain('"url":"/pp"');
      const entry = await trace.waitFor();
      expect(entry.hooks).toEqual(expectedOrder('connect-proxy', entry.hooks));
      expect(entry.hooks.slice(0, 3)).toEqual(['newCtx', 'proxyProtocol.handleConnection', 'ingress.handleConnection']);
      expect(entry.hooks).toEqual(HOOK_ORDER['connect-proxy'].filter((h) => h !== 'egress.dnsResolveOverride'));
      expect(tlv).toBe('tenant-a');
      expect(client).toBe('198.18.0.7:40000');
    } finally {
      await proxy.close();
    }
  });

  describe('public-hostname listener (curl --haproxy-protocol → edge → tunnel → origin)', () => {
    let t: TunnelEdge;
    beforeAll(async () => {
      t = await startTunnelEdge(everyHook(), origin.port, { proxyProtocol: true });
    });
    afterAll(async () => {
      await t?.close();
    });

    it('two requests on one connection: the connection hooks once, the request hooks per request, in the documented order', async () => {
      t.trace.clear();
      const r = await curl(['--haproxy-protocol', '-H', `Host: ${t.hostname}`, `${t.http}/one`, `${t.http}/two`]);
      expect(r.code, r.stderr).toBe(0);
      const entry = await t.trace.waitFor((e) => e.onramp === 'public-hostname');
      expect(orderViolations('public-hostname', entry.hooks)).toEqual([]);
      const request = ['http.handleRequest', 'http.handleResponse'];
      expect(entry.hooks).toEqual([...HOOK_ORDER['public-hostname'].slice(0, 3), ...request, ...request, 'ingress.handleConnectionClose']);
    });
  });

  it('the checker catches a reorder', () => {
    expect(orderViolations('connect-proxy', ['newCtx', 'egress.handleConnection', 'http.handleProxyConnectRequest'])).toHaveLength(1);
  });
});
