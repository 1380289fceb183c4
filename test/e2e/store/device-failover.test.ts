/**
 * A device over several edges of one PostgreSQL store (issue 14), real processes, every host
 * a namespace made and deleted here:
 *
 *   device ns ──veth 198.18.2.0/30── edges ns (edge-a :7844, edge-b :7846) ──veth 198.18.1.0/30── dc ns (connector, hosts 198.18.0.10, 198.18.3.10)
 *
 * The connector spreads over both edges; the device (`warp connect --token`, --edge given
 * twice) connects to the first it names, edge-b. A route added with the CLI reaches the
 * device through edge-b within 1 s (LISTEN/NOTIFY to the edge, the control stream to the
 * device); then edge-b is killed with SIGKILL and the device's traffic resumes through edge-a.
 * Once with the device on HTTP/2, once on QUIC (where a killed edge says nothing).
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { decodeDeviceToken } from '../../../src/core/devices.js';
import { BIN, oxyOk } from '../../helpers/cli.js';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { until } from '../../helpers/until.js';
import { type DeviceNets, type NsProcess, startDeviceNets } from '../../helpers/vnet-site.js';

for (const protocol of ['http2', 'quic'] as const)
  privilegedDescribe(`a device over two edges of one PostgreSQL store (${protocol})`, () => {
    let nets: DeviceNets;
    let edgeB: NsProcess;
    let warp: NsProcess;
    /** One HTTP GET from the device namespace: the body, or '' when it failed. */
    const getFromDevice = (url: string, timeoutS = 2) => nets.inDevice('curl', ['-s', '-m', String(timeoutS), url]);

    beforeAll(async () => {
      // Heartbeats every second: the registry sees a killed edge within 3 s.
      nets = await startDeviceNets(['oxyedges', 'oxydc', 'oxydev'], { env: { OXY_EDGE_HEARTBEAT_MS: '1000' }, dcHosts: ['198.18.3.10'] });
      const { home, dc, device, spawnIn } = nets;
      for (const [location, port] of [
        ['edge-a', 7844],
        ['edge-b', 7846],
      ] as const) {
        const edge = await nets.startEdge(location, port, ['--location', location]);
        if (location === 'edge-b') edgeB = edge;
      }
      // Enrolled once both edges run: the token names both (`oxyctl edge list`'s tunnel addresses).
      const token = (await oxyOk(home, ['warp', 'enroll', 'laptop'])).trim();
      expect(decodeDeviceToken(token).e?.split(',').sort()).toEqual(['198.18.1.1:7844', '198.18.1.1:7846']);
      spawnIn(dc, ['-e', "require('http').createServer((q, s) => s.end('site ' + q.socket.localAddress + '\\n')).listen(80, '0.0.0.0')"]);
      const connector = nets.startConnector('http2', ['198.18.1.1:7844', '198.18.1.1:7846'], 2);
      for (let i = 0; i < 2; i++) await connector.waitFor(new RegExp(`Registered tunnel connection connIndex=${i} `));
      // --edge given twice overrides the token's order: the device names edge-b first and connects there. Its routes follow the vnet's (no --route).
      warp = spawnIn(device, [BIN, 'warp', 'connect', '--token', token, '--protocol', protocol, '--edge', '198.18.1.1:7846', '--edge', '198.18.1.1:7844']);
      await warp.waitFor(/Connected to the edge/);
      await until(async () => (await getFromDevice('http://198.18.0.10/')) === 'site 198.18.0.10', 15_000, 'the device to reach the site');
    });

    afterAll(async () => {
      await nets?.close();
    });

    it('a route added with the CLI is used by the device (on edge-b) within 1 s', async () => {
      expect(await getFromDevice('http://198.18.3.10/', 1)).toBe('');
      await oxyOk(nets.home, ['tunnel', 'route', 'ip', 'add', '--vnet', 'site', '198.18.3.0/24', 'site'], nets.env as Record<string, string>);
      const t0 = Date.now();
      await until(async () => (await getFromDevice('http://198.18.3.10/', 1)) === 'site 198.18.3.10', 5000, 'the device to use the new route');
      const ms = Date.now() - t0;
      expect(warp.output).toMatch(/Routes updated/);
      expect(ms).toBeLessThan(1000);
    });

    it('kill -9 of its edge: the device moves to the other edge and its traffic resumes', async () => {
      const status = async () => (JSON.parse(await oxyOk(nets.home, ['warp', 'status', '-o', 'json'])) as { edge: string }).edge;
      expect(await status()).toBe('198.18.1.1:7846');
      edgeB.child.kill('SIGKILL');
      // Over HTTP/2 the kernel resets the killed edge's TCP connection; over QUIC it only goes silent (3 s).
      await warp.waitFor(/Lost the edge; moving to another/, 10_000);
      await warp.waitFor(/Moved to the edge edge=198\.18\.1\.1:7844/, 15_000);
      await until(async () => (await getFromDevice('http://198.18.0.10/')) === 'site 198.18.0.10', 15_000, 'traffic through edge-a');
      // Same process, same TUN: the device did not restart.
      expect(warp.child.exitCode).toBeNull();
      // warp status names the edge in use now.
      expect(await status()).toBe('198.18.1.1:7844');
      expect(await getFromDevice('http://198.18.3.10/')).toBe('site 198.18.3.10');
    });
  });
