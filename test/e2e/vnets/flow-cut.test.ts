// A private TCP flow whose tunnel stream dies under it (the connector killed, the device gone) was
// cut: its sockets at both ends must be reset (RST), never ended with a FIN, which the far end
// would take for a clean end of the data. Over QUIC the addon pumps the flow at both ends
// (transport/flow-pump.ts PumpedFlow: its close after a dead stream, the connection's teardown);
// over HTTP/2 the JS link does (protocol/tcp-flows.ts FlowLink.kill).
import { afterAll, beforeAll, expect, it } from 'vitest';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { startVnetSiteWithHost, type NsProcess, type VnetSite } from '../../helpers/vnet-site.js';

// In the data centre: 9103 logs a client's first bytes and how its connection ended; 9107 sends
// 1 KiB every 50 ms until the connection goes.
const HOST = `
const net = require('net');
net.createServer((s) => {
  s.once('data', (c) => console.log('host got ' + c));
  s.on('error', (e) => console.log('host saw ' + e.code));
  s.on('end', () => console.log('host saw end'));
}).listen(9103, '198.18.0.10', () => console.log('listening'));
net.createServer((s) => {
  s.on('error', () => undefined);
  const t = setInterval(() => s.write(Buffer.alloc(1024, 7)), 50);
  s.on('close', () => clearInterval(t));
}).listen(9107, '198.18.0.10');
`;

// On the device: 'read' reads what 9107 sends and says how its connection ended; 'hello' sends hello to 9103 and stays.
const CLIENT = `
const net = require('net');
if (process.argv[1] === 'read') {
  const s = net.connect(9107, '198.18.0.10');
  s.once('data', () => console.log('flowing'));
  s.on('error', (e) => console.log('device saw ' + e.code));
  s.on('end', () => console.log('device saw end'));
} else {
  const s = net.connect(9103, '198.18.0.10', () => s.write('hello'));
  s.on('error', () => undefined);
}
`;

const ended = (p: NsProcess, who: string) => p.waitFor(new RegExp(`${who} saw (\\w+)`), 30_000).then((m) => m[1]);

// A connector that does not announce tcp-flows/1 gets a stream per flow (JS relays over HTTP/2).
const VARIANTS: Array<{ name: string; protocol: 'quic' | 'http2'; env: Record<string, string> }> = [
  { name: 'quic', protocol: 'quic' as const, env: {} },
  { name: 'http2', protocol: 'http2' as const, env: {} },
  { name: 'http2, a stream per flow', protocol: 'http2' as const, env: { OXY_TCP_FLOWS: '0' } },
];

for (const { name, protocol, env } of VARIANTS) {
  privilegedDescribe(`a private TCP flow cut under its tunnel stream (${name})`, () => {
    let site: VnetSite;
    let host: NsProcess;
    beforeAll(async () => {
      ({ site, host } = await startVnetSiteWithHost(HOST, { protocol, connectorEnv: env }));
    });
    afterAll(async () => {
      await site?.close();
    });

    it('the connector killed mid-flow: the device sees a reset, not an end', async () => {
      const client = site.spawnIn(site.device, process.execPath, ['-e', CLIENT, 'read']);
      await client.waitFor(/flowing/);
      site.connector.child.kill('SIGKILL');
      try {
        // Over QUIC the edge hears of it at the idle timeout (15 s); over HTTP/2 at once.
        expect(await ended(client, 'device')).toBe('ECONNRESET');
      } finally {
        // A connector again for the next test (the same command).
        const vars = Object.entries(env).map(([k, v]) => `${k}=${v}`);
        const again = site.spawnIn(site.dc, 'env', [...vars, process.execPath, ...site.connector.child.spawnargs.slice(5)]);
        await again.waitFor(/Registered tunnel connection connIndex=0 /);
      }
    }, 60_000);

    it('the device gone mid-flow (the edge ends its flows): the host sees a reset, not an end', async () => {
      site.spawnIn(site.device, process.execPath, ['-e', CLIENT, 'hello']);
      await host.waitFor(/host got hello/);
      site.warp.child.kill('SIGKILL');
      expect(await ended(host, 'host')).toBe('ECONNRESET');
    }, 40_000);
  });
}
