/**
 * The IP path under `edge run --workers 2` (the default with a CA key): a device
 * (`warp connect --token`) whose connection sits on one worker reaches a site whose connector's
 * connection sits on the other, through the workers' private peer listeners. Real processes
 * in namespaces made and deleted here:
 *
 *   device ns ──veth 198.18.2.0/30── edge ns (one edge, 2 workers, :7844) ──veth 198.18.1.0/30── dc ns (connector, host 198.18.0.10)
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BIN, oxyOk } from '../../helpers/cli.js';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { until } from '../../helpers/until.js';
import { type DeviceNets, type NsProcess, startDeviceNets } from '../../helpers/vnet-site.js';

privilegedDescribe('a device on one edge worker reaching a site whose connector is on the other worker', () => {
  let nets: DeviceNets;
  let edge: NsProcess;

  beforeAll(async () => {
    nets = await startDeviceNets(['oxywrke', 'oxywrkc', 'oxywrkd']);
    const { home, device, spawnIn } = nets;
    edge = await nets.startEdge('edge', 7844, ['--workers', '2', '--advertise', '198.18.1.1:7844'], /Edge running .*workers=2/, 30_000);
    const token = (await oxyOk(home, ['warp', 'enroll', 'laptop'])).trim();
    nets.startSite();
    const warp = spawnIn(device, [BIN, 'warp', 'connect', '--token', token, '--protocol', 'http2', '--edge', '198.18.1.1:7844']);
    await warp.waitFor(/Connected to the edge/);
    const deviceWorker = (await edge.waitFor(/Device connected worker=(\d)/))[1];
    // The kernel picks the worker of each connection (SO_REUSEPORT): redial until the
    // connector's one connection sits on the worker the device is not on (½ a try).
    for (let attempt = 0; ; attempt++) {
      const seen = (edge.output.match(/Registered tunnel connection worker=\d/g) ?? []).length;
      const connector = nets.startConnector('quic', ['198.18.1.1:7844'], 1);
      await connector.waitFor(/Registered tunnel connection connIndex=0 /);
      await until(async () => (edge.output.match(/Registered tunnel connection worker=\d/g) ?? []).length > seen, 5000, 'the edge to log the registration');
      const worker = [...edge.output.matchAll(/Registered tunnel connection worker=(\d)/g)].at(-1)![1];
      if (worker !== deviceWorker) break;
      if (attempt === 12) throw new Error('the connector never landed on the other worker');
      await connector.stop();
    }
  });

  afterAll(async () => {
    await nets?.close();
  });

  it('TCP and ping reach the site across the workers; a 1 MiB answer byte-exact', async () => {
    expect(await nets.siteBigAnswer()).toBe(1 << 20);
    expect(await nets.inDevice('ping', ['-c', '1', '-W', '3', '198.18.0.10'])).toMatch(/1 received/);
    expect(edge.output).toMatch(/Peer link to edge open worker=\d/);
  });
});
