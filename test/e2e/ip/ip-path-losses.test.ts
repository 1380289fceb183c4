/**
 * No silent losses on the IP path through a QUIC connector: `ping -6` from a device reaches an
 * IPv6 host behind the tunnel (the connector's raw ICMPv6 socket), and UDP datagrams of any
 * size up to 60,000 bytes cross both ways byte for byte — payloads too large for a QUIC
 * DATAGRAM frame ride the flow's stream and are counted (oxy_edge_udp_payloads_total, and the
 * connector's oxyctl_private_udp_payloads_total).
 * Real processes and sockets in namespaces (vnet-site.ts).
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { oxyOk } from '../../helpers/cli.js';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { edgeCounter, startVnetSite, type VnetSite } from '../../helpers/vnet-site.js';

const HOST6 = '2001:db8:10::10';

/** Sends one UDP datagram of each size from the device and prints the SHA-256 of each echo. */
const UDP_CLIENT = `
const { createHash } = require('crypto');
const [host, sizes] = [process.argv[1], process.argv[2].split(',').map(Number)];
const s = require('dgram').createSocket(host.includes(':') ? 'udp6' : 'udp4');
const got = {};
s.on('message', (m) => { got[m.length] = createHash('sha256').update(m).digest('hex'); if (Object.keys(got).length === sizes.length) done(); });
const done = () => { console.log(JSON.stringify(got)); process.exit(0); };
let i = 0;
const next = () => { if (i < sizes.length) { const n = sizes[i++]; const b = Buffer.alloc(n); for (let k = 0; k < n; k++) b[k] = (k * 7 + n) & 255; s.send(b, 5353, host, next); } };
next();
setTimeout(done, 8000);
`;
const expected = (n: number) => {
  const b = Buffer.alloc(n);
  for (let k = 0; k < n; k++) b[k] = (k * 7 + n) & 255;
  return createHash('sha256').update(b).digest('hex');
};

privilegedDescribe('IP path through a QUIC connector: ping -6 and UDP of every size', () => {
  let site: VnetSite;

  beforeAll(async () => {
    site = await startVnetSite({
      protocol: 'quic',
      deviceRoutes: ['2001:db8:10::/64'],
      warpArgs: ['--address6', '2001:db8:9::2'],
      beforeEdge: async (home) => void (await oxyOk(home, ['tunnel', 'route', 'ip', 'add', '--vnet', 'site', '2001:db8:10::/64', 'site'])),
    });
    site.dc.ip('-6', 'addr', 'add', `${HOST6}/128`, 'dev', 'lo', 'nodad');
    const echo = site.spawnIn(site.dc, process.execPath, [
      '-e',
      `for (const [type, host] of [['udp4', '198.18.0.10'], ['udp6', '${HOST6}']]) {
         const u = require('dgram').createSocket(type);
         u.on('message', (m, r) => u.send(m, r.port, r.address));
         u.bind(5353, host, () => console.log('echo ready ' + type));
       }`,
    ]);
    await echo.waitFor(/echo ready udp4/);
    await echo.waitFor(/echo ready udp6/);
  });
  afterAll(async () => {
    await site?.close();
  });

  it('ping -6 from the device is answered by the IPv6 host behind the connector', async () => {
    const r = await site.inDevice('ping', ['-6', '-c', '3', '-i', '0.2', '-W', '3', HOST6]);
    expect(r.stdout).toMatch(/3 packets transmitted, 3 received/);
    expect(site.connector.output).not.toMatch(/IPV6_V6ONLY/);
  });

  it('UDP datagrams from 100 to 60,000 bytes cross both ways whole (IPv4 and IPv6), the large ones counted', async () => {
    const sizes = [100, 1200, 1400, 1500, 4000, 9000, 60000];
    for (const host of ['198.18.0.10', HOST6]) {
      const r = await site.inDevice(process.execPath, ['-e', UDP_CLIENT, host, sizes.join(',')]);
      const got = JSON.parse(r.stdout) as Record<string, string>;
      expect(Object.fromEntries(Object.entries(got))).toEqual(Object.fromEntries(sizes.map((n) => [String(n), expected(n)])));
    }
    const count = edgeCounter(site, 'oxy_edge_udp_payloads_total');
    // Each address: 100 and 1200 as DATAGRAM frames; 1400 and up (5 of them) on the stream.
    expect(count('stream')).toBe(10);
    expect(count('datagram')).toBeGreaterThanOrEqual(4);
    expect(count('dropped')).toBe(0);
    // The echoes came back the same way: the connector counts its side.
    const connectorPort = (await site.connector.waitFor(/Starting metrics server on \/metrics address=127\.0\.0\.1:(\d+)/))[1];
    const connectorMetrics = site.dc.exec('curl', ['-s', `http://127.0.0.1:${connectorPort}/metrics`]);
    expect(connectorMetrics).toMatch(/^oxyctl_private_udp_payloads_total\{path="stream"\} 10$/m);
    expect(connectorMetrics).toMatch(/^oxyctl_private_udp_payloads_total\{path="dropped"\} 0$/m);
  });
});
