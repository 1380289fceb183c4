import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { startVnetSite, type VnetSite } from '../../helpers/vnet-site.js';

// `downgrade` egress toward the edge's own network (settings.vnetOffRamp): a device's TCP
// flow to port 80 is upgraded for the app, which sees the bytes, then leaves again as IP
// packets that the edge routes in the device's vnet to the tunnel serving the host.
const APP = `
export function start(settings) {
  return {
    ipFlow: { handleFlow: (flow) => (flow.protocol === 6 && flow.dst.port === 80 ? { action: 'upgrade' } : undefined) },
    egress: {
      handleConnection: (target, ctx) => (target.port === 80 ? { action: 'downgrade', offRamp: settings.vnetOffRamp(ctx) } : undefined),
      handleConnectionEstablished: (info, ctx) => ctx.log.info({ via: info.via, upstream: info.upstream.address + ':' + info.upstream.port }, 'egress established'),
    },
    tunnel: {
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
require('http').createServer((q, s) => s.end('site host saw ' + q.url + '\\n')).listen(80, '198.18.0.10', () => console.log('host ready'));
`;

privilegedDescribe('egress downgrade to settings.vnetOffRamp (the edge\'s own IP network)', () => {
  let site: VnetSite;
  const dir = mkdtempSync(join(tmpdir(), 'oxy-app-'));

  beforeAll(async () => {
    const app = join(dir, 'app.mjs');
    writeFileSync(app, APP);
    site = await startVnetSite({ edgeArgs: ['--hooks', app] });
    await site.spawnIn(site.dc, process.execPath, ['-e', HOST]).waitFor(/host ready/);
  }, 120_000);
  afterAll(async () => {
    await site?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a device request reaches the host through the app, downgraded and routed in its vnet', async () => {
    for (const path of ['/one', '/two']) {
      const r = await site.inDevice('curl', ['-sS', '--max-time', '10', `http://198.18.0.10${path}`]);
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe(`site host saw ${path}\n`);
      await site.edge.waitFor(new RegExp(`app saw request .*line="GET ${path} HTTP/1\\.1"`));
    }
    expect(site.edge.output).toMatch(/egress established .*via=downgrade upstream=198\.18\.0\.10:80/);
  }, 60_000);
});
