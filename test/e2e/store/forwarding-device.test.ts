/**
 * A device's IP flows forwarded between edges (issue 14), real processes in namespaces made and
 * deleted here, one PostgreSQL store:
 *
 *   device ns ──veth 198.18.2.0/30── edges ns (edge-a :7844, edge-b :7846) ──veth 198.18.1.0/30── dc ns (connector, host 198.18.0.10)
 *
 * The connector (QUIC, so its connection has DATAGRAM frames) dials edge-a only; the device
 * (`warp connect --token`, HTTP/2) dials edge-b only. Its TCP, UDP and ping flows reach the
 * site through edge-b's peer link to edge-a: TCP byte-exact, UDP both ways (forwarded UDP rides
 * the flow's stream, the connector does not answer with datagrams edge-b cannot read).
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BIN, oxyOk } from '../../helpers/cli.js';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { type DeviceNets, type NsProcess, startDeviceNets } from '../../helpers/vnet-site.js';

privilegedDescribe("a device on one edge reaching a site whose connector is on another edge's", () => {
  let nets: DeviceNets;
  const edgeLogs: Record<string, NsProcess> = {};

  beforeAll(async () => {
    nets = await startDeviceNets(['oxyfwde', 'oxyfwdc', 'oxyfwdd']);
    const { home, device, spawnIn } = nets;
    for (const [location, port] of [
      ['edge-a', 7844],
      ['edge-b', 7846],
    ] as const) {
      const edge = await nets.startEdge(location, port, ['--location', location, '--advertise', `198.18.1.1:${port}`]);
      edgeLogs[location] = edge;
    }
    const token = (await oxyOk(home, ['warp', 'enroll', 'laptop'])).trim();
    nets.startSite({ udpEcho: true });
    const connector = nets.startConnector('quic', ['198.18.1.1:7844'], 2);
    for (let i = 0; i < 2; i++) await connector.waitFor(new RegExp(`Registered tunnel connection connIndex=${i} `));
    const warp = spawnIn(device, [BIN, 'warp', 'connect', '--token', token, '--protocol', 'http2', '--edge', '198.18.1.1:7846']);
    await warp.waitFor(/Connected to the edge/);
  });

  afterAll(async () => {
    await nets?.close();
  });

  it('TCP: the device gets the site through edge-b, forwarded to edge-a; a 1 MiB answer byte-exact', async () => {
    expect(await nets.siteBigAnswer()).toBe(1 << 20);
    expect(edgeLogs['edge-b'].output).toMatch(/Peer link to edge open .*location=edge-a/);
    expect(edgeLogs['edge-a'].output).toMatch(/Peer link from edge accepted/);
  });

  it('UDP: a datagram and its answer cross the forward, with a QUIC connector on the serving edge', async () => {
    const script = `const s = require('dgram').createSocket('udp4');
      s.on('message', (m) => { console.log(m.toString()); process.exit(0); });
      s.send('ping over udp', 53, '198.18.0.10'); setTimeout(() => process.exit(1), 3000);`;
    expect(await nets.inDevice(process.execPath, ['-e', script])).toBe('echo ping over udp');
  });

  it('ICMP: a ping of the site host is answered through the forward', async () => {
    const out = await nets.inDevice('ping', ['-c', '1', '-W', '3', '198.18.0.10']);
    expect(out).toMatch(/1 received/);
  });
});
