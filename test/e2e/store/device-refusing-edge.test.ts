/**
 * A device given several edges is not stopped by one that refuses it (issue 14 follow-up), real
 * processes in namespaces made and deleted here (test/helpers/vnet-site.ts):
 *
 *   device ns ──veth── edges ns (edge-a :7844 on the device's store; edge-x :7848, the same CA on another store) ──veth── dc ns (connector, site)
 *
 * `warp connect --token` names edge-x first: edge-x does not know the device and refuses it; the
 * device says so, connects through edge-a and reaches the site. Before, the refusal ended
 * `warp connect` although edge-a would have served it. Over HTTP/2 and over QUIC.
 */
import { cpSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BIN, oxyOk, storeEnv, tempHome } from '../../helpers/cli.js';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { until } from '../../helpers/until.js';
import { type DeviceNets, NsProcess, startDeviceNets } from '../../helpers/vnet-site.js';

privilegedDescribe('a device whose first edge refuses it', () => {
  let nets: DeviceNets;
  let other: { home: string; cleanup: () => void };
  let edgeX: NsProcess | undefined;

  beforeAll(async () => {
    nets = await startDeviceNets(['oxyrefe', 'oxyrefdc', 'oxyrefdev']);
    await nets.startEdge('edge-a', 7844, ['--location', 'edge-a']);
    // edge-x: the same CA and certificate (copied, as for any second edge), but a store of its own.
    other = tempHome();
    cpSync(join(nets.home, 'edge'), join(other.home, 'edge'), { recursive: true });
    edgeX = new NsProcess(
      nets.edges.spawn(
        process.execPath,
        [BIN, 'edge', 'run', '--tunnel-listen', '198.18.1.1:7848', '--http-listen', '127.0.0.1:0', '--metrics', '127.0.0.1:0', '--location', 'edge-x'],
        { env: { ...process.env, NO_COLOR: '1', OXY_HOME: other.home, ...storeEnv(other.home) }, stdio: ['ignore', 'pipe', 'pipe'] },
      ),
    );
    await edgeX.waitFor(/Tunnel listener ready protocol=http2 address=198\.18\.1\.1:7848/);
    nets.startSite();
    const connector = nets.startConnector('http2', ['198.18.1.1:7844'], 1);
    await connector.waitFor(/Registered tunnel connection connIndex=0 /);
  });

  afterAll(async () => {
    await edgeX?.stop();
    await nets?.close();
    other?.cleanup();
  });

  it.each(['http2', 'quic'] as const)(
    'says which edge refused it, connects through the other and reaches the site (%s)',
    async (protocol) => {
      const token = (await oxyOk(nets.home, ['warp', 'enroll', `laptop-${protocol}`])).trim();
      const warp = nets.spawnIn(nets.device, [
        ...[BIN, 'warp', 'connect', '--token', token, '--protocol', protocol],
        ...['--edge', '198.18.1.1:7848', '--edge', '198.18.1.1:7844'],
      ]);
      try {
        await warp.waitFor(/The edge refused the device; trying the other edges edge=198\.18\.1\.1:7848/);
        await warp.waitFor(/Connected to the edge/);
        await until(
          async () => (await nets.inDevice('curl', ['-s', '-m', '2', 'http://198.18.0.10/'])) === 'site 198.18.0.10',
          15_000,
          'the device to reach the site',
        );
        const status = JSON.parse(await oxyOk(nets.home, ['warp', 'status', '-o', 'json'])) as { edge: string; protocol?: string };
        expect(status.edge).toBe('198.18.1.1:7844');
        expect(status.protocol).toBe(protocol);
        expect(warp.child.exitCode).toBeNull();
      } finally {
        // One device at a time holds the device namespace's routes.
        await warp.stop();
      }
    },
    40_000,
  );
});
