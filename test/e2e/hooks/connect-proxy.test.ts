import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { oxyJson, oxyOk, tempHome } from '../../helpers/cli.js';
import { OxyProcess, startConnector } from '../../helpers/processes.js';
import { curl, receivedHeaders, startOrigin, startProxyEdge, type Origin, type ProxyEdge } from './support.js';
import type { EstablishedInfo } from '../../../src/engine/hooks/index.js';

// The forward proxy with the engine's default egress: direct, or through the tunnel whose
// route covers the destination in the client's vnet (`Oxy-Vnet` header; else the default vnet).
let home: string;
let cleanup: () => void;
let origin: Origin;
let p: ProxyEdge;
let connector: OxyProcess;
const established: EstablishedInfo[] = [];

beforeAll(async () => {
  ({ home, cleanup } = tempHome());
  origin = await startOrigin();
  await oxyOk(home, ['vnet', 'add', 'office']); // the first vnet: the default
  await oxyOk(home, ['vnet', 'add', 'lab']);
  await oxyOk(home, ['tunnel', 'create', 'dc1']);
  // Store data only: the traffic goes to 127.0.0.1, inside this /32, in vnet lab.
  await oxyOk(home, ['tunnel', 'route', 'ip', 'add', '--vnet', 'lab', '127.0.0.1/32', 'dc1']);
  // An egress event hook only records how each connection left; every decision is the engine's.
  p = await startProxyEdge({ egress: { handleConnectionEstablished: (info) => void established.push(info) } }, home);
  ({ connector } = await startConnector(home, p.edge.tunnelAddresses[0].address.port, ['--hello-world', 'dc1']));
});
afterAll(async () => {
  await connector?.stop();
  await p?.close();
  await origin?.close();
  cleanup();
});

describe('CONNECT proxy default egress', () => {
  it('leaves directly when no route in the default vnet covers the destination', async () => {
    established.length = 0;
    const r = await curl(['-p', '-x', p.proxy, `http://127.0.0.1:${origin.port}/direct`]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).url).toBe('/direct');
    expect(established[0]).toMatchObject({ via: 'direct', upstream: { address: '127.0.0.1', port: origin.port } });
  });

  it('goes through the tunnel whose route covers the destination in the vnet named by Oxy-Vnet', async () => {
    established.length = 0;
    const r = await curl(['-p', '-x', p.proxy, '--proxy-header', 'Oxy-Vnet: lab', `http://127.0.0.1:${origin.port}/tunneled`]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).url).toBe('/tunneled');
    const vnets = await oxyJson<{ id: string; name: string }[]>(home, ['vnet', 'list']);
    expect(established[0]).toMatchObject({
      via: 'tunnel',
      route: { network: '127.0.0.1/32', tunnelName: 'dc1', vnetId: vnets.find((v) => v.name === 'lab')!.id },
    });
  });

  it('carries a 4 MB body through the tunnel intact', async () => {
    const file = join(home, 'body.bin');
    writeFileSync(file, 'x'.repeat(4 * 1024 * 1024));
    const r = await curl(['-p', '-x', p.proxy, '--proxy-header', 'Oxy-Vnet: lab', '--data-binary', `@${file}`, `http://127.0.0.1:${origin.port}/big`]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).body).toHaveLength(4 * 1024 * 1024);
  });

  it('refuses a vnet that does not exist at once: 400 destination_not_found naming it', async () => {
    const r = await curl(['-v', '-p', '-x', p.proxy, '--proxy-header', 'Oxy-Vnet: nowhere', `http://127.0.0.1:${origin.port}/`]);
    expect(r.stderr).toMatch(/response 400/);
    expect(receivedHeaders(r.stderr).join('\n')).toMatch(/Proxy-Status: oxyctl; error=destination_not_found; details="virtual network nowhere not found/);
  });

  it('answers 502 connection_refused when the connector cannot reach the destination', async () => {
    const closed = await startOrigin();
    const port = closed.port;
    await closed.close();
    const r = await curl(['-v', '-p', '-x', p.proxy, '--proxy-header', 'Oxy-Vnet: lab', `http://127.0.0.1:${port}/`]);
    expect(r.stderr).toMatch(/response 502/);
    expect(receivedHeaders(r.stderr).join('\n')).toMatch(/error=connection_refused/);
  });

  it('answers 400 to a CONNECT without a port', async () => {
    const socket = net.connect(p.proxyPort, '127.0.0.1');
    let got = '';
    socket.on('data', (d) => (got += d));
    socket.write('CONNECT 127.0.0.1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    await new Promise((r) => socket.once('close', r));
    expect(got).toMatch(/^HTTP\/1\.1 400 Bad Request\r\nProxy-Status: oxyctl; error=destination_unavailable/);
  });
});
