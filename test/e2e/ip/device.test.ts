import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { privilegedDescribe } from '../../helpers/privileged.js';
import { useNetns } from '../../helpers/netns.js';
import { IpEdge, SeqpacketOnRamp } from '../../../src/engine/edge/ip/index.js';
import { attachDevice, run, type Device } from './device.js';

privilegedDescribe('device namespace: real curl and iperf3 through the SEQPACKET on-ramp and the upgrade', () => {
  const ns = useNetns('oxy-ipdev');
  let edge: IpEdge;
  let onRamp: SeqpacketOnRamp;
  let device: Device;
  let httpServer: http.Server;
  let iperf: ChildProcess | undefined;
  let iperfPort = 0;
  const path = `\0oxy-ip-dev-${process.pid}-${randomBytes(4).toString('hex')}`;

  beforeAll(async () => {
    httpServer = http.createServer((req, res) => {
      res.setHeader('content-type', 'text/plain');
      res.end(`hello ${req.url} from behind the upgrade\n`);
    });
    await new Promise<void>((r) => httpServer.listen(0, '127.0.0.1', r));
    const httpPort = (httpServer.address() as net.AddressInfo).port;
    // A free loopback port for iperf3's server.
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    iperfPort = (probe.address() as net.AddressInfo).port;
    await new Promise((r) => probe.close(r));
    iperf = spawn('iperf3', ['-s', '-B', '127.0.0.1', '-p', String(iperfPort), '-1'], { stdio: 'ignore' });

    edge = await IpEdge.create({
      onTcpStream(socket, flow) {
        // The off-ramp for this test: port 80 → the local HTTP server, 5201 → iperf3.
        const port = flow.dstPort === 80 ? httpPort : flow.dstPort === 5201 ? iperfPort : 0;
        if (!port) return void socket.destroy();
        const upstream = net.connect({ host: '127.0.0.1', port, noDelay: true });
        upstream.on('error', () => socket.destroy());
        socket.on('error', () => upstream.destroy());
        socket.pipe(upstream).pipe(socket);
      },
    });
    onRamp = new SeqpacketOnRamp(edge, path);
    device = attachDevice(ns(), path, { tenant: 'device-test', vnet: 'default' });
    await new Promise((r) => setTimeout(r, 300)); // iperf3 server start
  });
  afterAll(() => {
    iperf?.kill('SIGKILL');
    device?.close();
    onRamp?.close();
    edge?.close();
    httpServer?.close();
  });

  it('curl fetches a page over IPv4 and IPv6', async () => {
    const v4 = await run(ns().spawn('curl', ['-sS', '--max-time', '10', 'http://198.18.2.2/page']), 15_000);
    expect(v4.stderr).toBe('');
    expect(v4.stdout).toBe('hello /page from behind the upgrade\n');
    const v6 = await run(ns().spawn('curl', ['-sS', '--max-time', '10', 'http://[2001:db8:2::2]/six']), 15_000);
    expect(v6.stdout).toBe('hello /six from behind the upgrade\n');
    const flows = [...edge.table.flows()].filter((f) => f.dstPort === 80);
    for (const f of flows) expect(f.tenant).toBe('device-test');
  });

  it('iperf3 crosses the path', async () => {
    const result = await run(ns().spawn('iperf3', ['-c', '198.18.2.2', '-p', '5201', '-t', '2', '-J']), 20_000);
    // iperf3 in the device dials 198.18.2.2:5201; the edge maps 5201 to the real server.
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout) as { end: { sum_received: { bits_per_second: number; bytes: number } } };
    console.log(`iperf3 through device TUN → SEQPACKET → edge upgrade: ${(report.end.sum_received.bits_per_second / 1e9).toFixed(2)} Gbit/s`);
    expect(report.end.sum_received.bytes).toBeGreaterThan(0);
  }, 30_000);
});
