// `edge run --gue-listen HOST:0` binds any free port: the ready line must name the one bound,
// or no sender can find the on-ramp. The port it names answers as the GUE on-ramp: an
// unauthenticated (context v1) datagram sent there is refused and counted.
import dgram from 'node:dgram';
import { afterEach, expect, it } from 'vitest';
import { request } from 'undici';
import { tempHome } from '../../helpers/cli.js';
import { OxyProcess, LOOPBACK_EDGE } from '../../helpers/processes.js';
import { until } from '../../helpers/until.js';

const home = tempHome();
let edge: OxyProcess | undefined;
afterEach(async () => {
  await edge?.stop('SIGKILL');
  home.cleanup();
});

it('names the port it bound, and that port is the GUE on-ramp', async () => {
  edge = new OxyProcess(home.home, [...LOOPBACK_EDGE, '--no-quic', '--gue-listen', '127.0.0.1:0']);
  const port = Number((await edge.waitFor(/IP tunnel on-ramp ready \(GUE\) address=127\.0\.0\.1:(\d+)/))[1]);
  const metrics = Number((await edge.waitFor(/Edge running metrics=127\.0\.0\.1:(\d+)/))[1]);
  expect(port).toBeGreaterThan(0);
  // GUE header (Hlen 2, inner IPv4), context 'O' v1 with no tenant or vnet, then a minimal IPv4 header.
  const datagram = Buffer.concat([
    Buffer.from([2, 4, 0, 0]),
    Buffer.from([0x4f, 1, 0, 0, 0, 0, 0, 0]),
    Buffer.from('4500001400000000401100000000000000000000', 'hex'),
  ]);
  const socket = dgram.createSocket('udp4');
  try {
    await until(
      async () => {
        socket.send(datagram, port, '127.0.0.1');
        const text = await (await request(`http://127.0.0.1:${metrics}/metrics`)).body.text();
        return /oxy_edge_gue_dropped_total\{reason="unauthenticated"\} [1-9]/.test(text);
      },
      10_000,
      'the unauthenticated datagram counted',
    );
  } finally {
    socket.close();
  }
});
