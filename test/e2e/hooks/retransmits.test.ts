// ingress.handleConnectionClose gets the kernel's TCP_INFO of the client's connection
// (retransmits, RTT), read just before the socket closes, on both HTTP on-ramps.
//
//   client netns  oxc 198.18.9.2/24 ── curl
//        │ veth, 10 % of the packets toward the client lost (netem, or nftables where the kernel has no netem)
//   edge netns    oxe 198.18.9.1/24 ── in-process edge: forward proxy + public-hostname listener
//
// The hook answers /big itself (2 MiB, { respond }), so no origin or tunnel is needed: the
// bytes that get lost are the edge's, on the connection the edge accepted. On loopback
// nothing is lost and the count stays near 0 (a loaded machine's tail-loss probes count).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConnectionStats, Hooks } from '../../../src/engine/hooks/index.js';
import { closeFd, currentNetns, openNetns } from '../../../src/engine/native/index.js';
import { insideNetnsAsync, TestNetns } from '../../helpers/netns.js';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { curl, startProxyEdge, type ProxyEdge } from './support.js';
import { until } from '../../helpers/until.js';

const BIG = Buffer.alloc(2 * 1024 * 1024, 'x');

/** Answers /big with 2 MiB; records each connection's statistics by on-ramp and client port. */
function statsHooks(closed: Map<string, ConnectionStats>): Hooks {
  return {
    http: { handleRequest: (head) => (new URL(head.url).pathname === '/big' ? { respond: { status: 200, body: BIG } } : undefined) },
    ingress: { handleConnectionClose: (stats, ctx) => void closed.set(`${ctx.onramp}:${ctx.client.port}`, stats) },
  };
}

/** Downloads /big with curl (through the proxy when `proxy` is given); returns curl's local port. */
async function download(url: string, o: { proxy?: string; host?: string; netns?: string }): Promise<number> {
  const args = [
    '-o',
    '/dev/null',
    '-w',
    '%{size_download} %{local_port}',
    ...(o.proxy ? ['-x', o.proxy] : []),
    ...(o.host ? ['-H', `Host: ${o.host}`] : []),
    url,
  ];
  const r = await curl(['--max-time', '60', ...args], { netns: o.netns });
  expect(r.code, r.stderr).toBe(0);
  const [size, port] = r.stdout.split(' ').map(Number);
  expect(size).toBe(BIG.length);
  return port;
}

describe('TCP_INFO on loopback', () => {
  const closed = new Map<string, ConnectionStats>();
  let p: ProxyEdge;
  beforeAll(async () => {
    p = await startProxyEdge(statsHooks(closed), undefined, { httpListen: '127.0.0.1:0' });
  });
  afterAll(async () => {
    await p?.close();
  });

  it('no loss, (almost) no retransmits on the forward proxy and the public-hostname listener, with an RTT', async () => {
    const viaProxy = await download('http://198.18.9.99/big', { proxy: p.proxy });
    const direct = await download(`http://127.0.0.1:${p.edge.httpAddress!.port}/big`, { host: 'any.example.test' });
    await until(
      () => closed.has(`connect-proxy:${viaProxy}`) && closed.has(`public-hostname:${direct}`),
      1000,
      () => `handleConnectionClose for connect-proxy:${viaProxy} and public-hostname:${direct}; closes seen: ${[...closed.keys()].join(', ') || 'none'}`,
    );
    for (const stats of [closed.get(`connect-proxy:${viaProxy}`)!, closed.get(`public-hostname:${direct}`)!]) {
      // Nothing is lost on loopback, but on a loaded machine a tail-loss probe (the last segment
      // sent again when its ACK is late) counts as one; the lossy link below shows tens to hundreds.
      expect(stats.retransmits).toBeLessThanOrEqual(3);
      expect(stats.rttMs).toBeGreaterThanOrEqual(0);
      expect(stats.bytesOut).toBeGreaterThan(BIG.length);
    }
  });
});

privilegedDescribe('TCP_INFO through a lossy link (network namespaces)', () => {
  const closed = new Map<string, ConnectionStats>();
  let edgeNs: TestNetns | undefined;
  let clientNs: TestNetns | undefined;
  let home = -1;
  let target = -1;
  let p: ProxyEdge | undefined;

  beforeAll(async () => {
    edgeNs = TestNetns.create('oxy-rtx-edge');
    clientNs = TestNetns.create('oxy-rtx-cli');
    edgeNs.veth('oxe', clientNs, 'oxc');
    edgeNs.ip('addr', 'add', '198.18.9.1/24', 'dev', 'oxe');
    clientNs.ip('addr', 'add', '198.18.9.2/24', 'dev', 'oxc');
    const how = edgeNs.lossyLink('oxe', clientNs, 'oxc', 10);
    console.log(`10 % loss toward the client with ${how}`);
    home = currentNetns();
    target = openNetns(edgeNs.path);
    // Listeners made inside the edge namespace stay there (and so do the connections they accept).
    p = await insideNetnsAsync(target, home, () => startProxyEdge(statsHooks(closed), undefined, { proxyListen: '198.18.9.1:0', httpListen: '198.18.9.1:0' }));
  });
  afterAll(async () => {
    await p?.close();
    if (target >= 0) closeFd(target);
    if (home >= 0) closeFd(home);
    clientNs?.delete();
    edgeNs?.delete();
  });

  it('retransmits > 0 on the forward proxy and on the public-hostname listener', async () => {
    const netns = clientNs!.name;
    const viaProxy = await download('http://198.18.9.99/big', { proxy: `http://198.18.9.1:${p!.proxyPort}`, netns });
    const direct = await download(`http://198.18.9.1:${p!.edge.httpAddress!.port}/big`, { host: 'any.example.test', netns });
    await until(
      () => closed.has(`connect-proxy:${viaProxy}`) && closed.has(`public-hostname:${direct}`),
      1000,
      () => `handleConnectionClose for connect-proxy:${viaProxy} and public-hostname:${direct}; closes seen: ${[...closed.keys()].join(', ') || 'none'}`,
    );
    const stats = [closed.get(`connect-proxy:${viaProxy}`)!, closed.get(`public-hostname:${direct}`)!];
    console.log(`retransmits: forward proxy ${stats[0].retransmits}, public hostname ${stats[1].retransmits}; rtt ${stats[0].rttMs} / ${stats[1].rttMs} ms`);
    for (const s of stats) {
      expect(s.retransmits).toBeGreaterThan(0);
      expect(s.rttMs).toBeGreaterThan(0);
    }
  }, 60_000);
}, ['root', 'netns']);
