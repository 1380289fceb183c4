import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { startVnetSite, type VnetSite } from '../../helpers/vnet-site.js';

// The egress hooks on a device's IP flows, with `oxyctl edge run --hooks` and real processes:
// - `downgrade` toward the edge's own network (settings.vnetOffRamp): a TCP flow to port 80
//   (and UDP to port 5353) is upgraded for the app, which sees the bytes, then leaves again
//   as IP packets that the edge routes in the device's vnet to the tunnel serving the host;
// - a UDP flow to an address no route covers meets the egress hooks (default: direct) and
//   `udpConnectOverride` answers it, instead of an ICMP unreachable.
const APP = `
import { createSocket } from 'node:dgram';
export function start(settings) {
  return {
    newCtx: () => ({ protocol: 0 }),
    ipFlow: {
      handleFlow(flow, _packet, ctx) {
        ctx.ext.protocol = flow.protocol;
        return undefined;
      },
    },
    egress: {
      handleConnection(target, ctx) {
        if (ctx.ext.protocol === 6 && target.port === 80) return { action: 'downgrade', offRamp: settings.vnetOffRamp(ctx) };
        if (ctx.ext.protocol === 17 && target.port === 5353) return { action: 'downgrade', offRamp: settings.vnetOffRamp(ctx) };
        if (target.ip === '198.18.0.66') return { action: 'block' };
        return undefined;
      },
      udpConnectOverride(upstream, ctx) {
        let receive = () => undefined;
        ctx.log.info({ upstream: upstream.address + ':' + upstream.port }, 'app answers UDP');
        return { send: (p) => setImmediate(() => receive(Buffer.from('app:' + p))), onMessage: (r) => (receive = r), close() {} };
      },
      handleConnectionEstablished: (info, ctx) => ctx.log.info({ via: info.via, upstream: info.upstream.address + ':' + info.upstream.port }, 'egress established'),
    },
    tunnel: {
      shouldInterceptHttps(sni, ctx) {
        ctx.log.info({ sni: sni ?? 'none', port: ctx.local.port }, 'intercept asked');
        return false;
      },
      appTunnelPipeline(client, upstream, _info, ctx) {
        client.once('data', (chunk) => ctx.log.info({ line: String(chunk).split('\\r\\n')[0] }, 'app saw request'));
        client.pipe(upstream);
        upstream.pipe(client);
        return new Promise((resolve) => client.once('close', resolve));
      },
    },
  };
}
`;

const HOST = `
require('http').createServer((q, s) => s.end('site host saw ' + q.url + '\\n')).listen(80, '198.18.0.10');
const u = require('dgram').createSocket('udp4');
u.on('message', (m, r) => u.send(Buffer.from('site:' + m), r.port, r.address));
// Waits for the client as a TLS server would, then closes.
require('net').createServer((c) => c.once('data', () => c.end())).listen(443, '198.18.0.10');
u.bind(5353, '198.18.0.10', () => console.log('host ready'));
`;

privilegedDescribe('egress hooks on device IP flows (edge run --hooks)', () => {
  let site: VnetSite;
  const dir = mkdtempSync(join(tmpdir(), 'oxy-app-'));
  const udp = (ip: string, text: string, port = 5353) =>
    site
      .inDevice(process.execPath, [
        '-e',
        `
      const s = require('dgram').createSocket('udp4');
      s.on('message', (m) => { console.log(String(m)); process.exit(0); });
      s.send('${text}', ${port}, '${ip}');
      setTimeout(() => { console.log('no answer'); process.exit(0); }, 3000);`,
      ])
      .then((r) => r.stdout.trim());

  beforeAll(async () => {
    const app = join(dir, 'app.mjs');
    writeFileSync(app, APP);
    site = await startVnetSite({ edgeArgs: ['--hooks', app], deviceRoutes: ['198.18.9.0/24'] });
    await site.spawnIn(site.dc, process.execPath, ['-e', HOST]).waitFor(/host ready/);
  }, 120_000);
  afterAll(async () => {
    await site?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('TCP: a device request reaches the host through the app, downgraded and routed in its vnet', async () => {
    for (const path of ['/one', '/two']) {
      const r = await site.inDevice('curl', ['-sS', '--max-time', '10', `http://198.18.0.10${path}`]);
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe(`site host saw ${path}\n`);
      await site.edge.waitFor(new RegExp(`app saw request .*line="GET ${path} HTTP/1\\.1"`));
    }
    expect(site.edge.output).toMatch(/egress established .*via=downgrade upstream=198\.18\.0\.10:80/);
  }, 60_000);

  it('TCP: shouldInterceptHttps gets the SNI of a TLS client on an IP flow, and none for plain HTTP', async () => {
    await site.inDevice('curl', ['-sS', '--max-time', '5', 'https://secure.site.test/', '--resolve', 'secure.site.test:443:198.18.0.10']);
    await site.edge.waitFor(/intercept asked .*sni=secure\.site\.test port=443/);
    expect(site.edge.output).toMatch(/intercept asked .*sni=none port=80/);
  }, 30_000);

  it('UDP: downgraded toward the vnet, answered by the host', async () => {
    expect(await udp('198.18.0.10', 'hello')).toBe('site:hello');
    expect(site.edge.output).toMatch(/egress established .*via=downgrade upstream=198\.18\.0\.10:5353/);
  }, 30_000);

  it('UDP without a route meets the egress hooks: udpConnectOverride answers; a blocked one gets nothing', async () => {
    expect(await udp('198.18.9.9', 'hi', 5454)).toBe('app:hi');
    expect(site.edge.output).toMatch(/app answers UDP .*upstream=198\.18\.9\.9:5454/);
    expect(site.edge.output).toMatch(/egress established .*via=direct upstream=198\.18\.9\.9:5454/);
    expect(await udp('198.18.0.66', 'nope', 5454)).toBe('no answer');
  }, 30_000);
});
