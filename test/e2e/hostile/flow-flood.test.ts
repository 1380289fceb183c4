/**
 * One client cannot starve the others: each private flow holds a stream of a connector
 * connection, and a local user opening 2,500 UDP flows over one SEQPACKET session used to
 * take all 1,000 streams of the site's connection, so another device's new flows waited for
 * the 30 s UDP idle timeout. `ip-limits.max-flows-per-session` (default 1,000; 500 here, for
 * a site with one HA connection) refuses the flood's excess, counted in
 * oxy_edge_ip_flows_refused_total{reason="session-limit"}, and the device is served at once.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { SeqpacketSocket } from '../../../src/engine/native/index.js';
import { buildUdp, parseAddress } from '../../../src/engine/packet/index.js';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { SITE_METRICS_PORT, startVnetSite, type VnetSite } from '../../helpers/vnet-site.js';

privilegedDescribe('a flood of flows from one session does not starve other devices', () => {
  let site: VnetSite;

  beforeAll(async () => {
    site = await startVnetSite({
      protocol: 'quic',
      beforeEdge: async (home) => writeFileSync(join(home, 'edge.yml'), 'ip-limits:\n  max-flows-per-session: 500\n'),
      edgeArgs: (home) => ['--config', join(home, 'edge.yml')],
    });
    const echo = site.spawnIn(site.dc, process.execPath, [
      '-e',
      `const u = require('dgram').createSocket('udp4');
       u.on('message', (m, r) => u.send(m, r.port, r.address));
       u.bind(5353, '198.18.0.10', () => console.log('echo ready'));`,
    ]);
    await echo.waitFor(/echo ready/);
  });
  afterAll(async () => {
    await site?.close();
  });

  it('2,500 UDP flows from one session: 2,000 refused (session-limit), another device served at once', async () => {
    const refused = () => {
      const text = site.edgeNs.exec('curl', ['-s', `http://127.0.0.1:${SITE_METRICS_PORT}/metrics`]);
      return Number(/^oxy_edge_ip_flows_refused_total\{reason="session-limit"\} (\d+)/m.exec(text)?.[1] ?? -1);
    };
    const flood = SeqpacketSocket.connect(join(site.home, 'ip-tunnel.sock'));
    flood.on('error', () => undefined);
    flood.send(Buffer.from(JSON.stringify({ tenant: 'flood', vnet: 'site' })));
    for (let i = 0; i < 2500; i++) {
      flood.send(
        buildUdp({ src: parseAddress('198.18.9.1'), dst: parseAddress('198.18.0.10'), srcPort: 10_000 + i, dstPort: 5353, payload: Buffer.from('flood') }),
      );
    }
    await expect.poll(refused, { timeout: 10_000 }).toBe(2000);
    const t0 = Date.now();
    const r = await site.inDevice(process.execPath, [
      '-e',
      `const s = require('dgram').createSocket('udp4');
       s.on('message', (m) => { console.log(m.toString()); process.exit(0); });
       const send = () => s.send('still served', 5353, '198.18.0.10');
       send();
       setInterval(send, 1000);
       setTimeout(() => process.exit(3), 10000);`,
    ]);
    expect(r.stdout.trim()).toBe('still served');
    expect(Date.now() - t0).toBeLessThan(5000);
    flood.close();
  }, 40_000);
});
