import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { oxyJson, oxyOk, tempHome } from '../../helpers/cli.js';
import { OxyProcess, startConnector } from '../../helpers/processes.js';
import { startBannerEchoServer, type Running } from '../../helpers/origins.js';
import { Store } from '../../../src/store/index.js';
import { runEdge } from '../../../src/engine/edge/run.js';
import type { EdgeServer } from '../../../src/engine/edge/server.js';
import { createLogger } from '../../../src/engine/observe/log.js';
import { readStreamHeader, ResponseStatus, writeRequestHeader } from '../../../src/engine/protocol/stream-header.js';

let home: string;
let cleanup: () => void;
let store: Store;
let edge: EdgeServer;
let connector: OxyProcess;
let echo: Running<unknown>;
let vnets: Record<string, string>;

beforeAll(async () => {
  ({ home, cleanup } = tempHome());
  echo = await startBannerEchoServer('hi\n');
  await oxyOk(home, ['vnet', 'add', 'lab']);
  await oxyOk(home, ['vnet', 'add', 'other']);
  await oxyOk(home, ['tunnel', 'create', 'dc1']);
  // Store data only: traffic goes to 127.0.0.1, inside this /32.
  await oxyOk(home, ['tunnel', 'route', 'ip', 'add', '--vnet', 'lab', '127.0.0.1/32', 'dc1']);
  vnets = Object.fromEntries((await oxyJson<{ id: string; name: string }[]>(home, ['vnet', 'list'])).map((v) => [v.name, v.id]));
  store = await Store.open(home);
  edge = await runEdge({ home, store, log: createLogger({ level: 'silent' }), tunnelListen: '127.0.0.1:0', location: 'test' });
  ({ connector } = await startConnector(home, edge.tunnelAddresses[0].address.port, ['--hello-world', 'dc1']));
});
afterAll(async () => {
  await connector?.stop();
  await edge?.stop();
  await store?.close();
  await echo.close();
  cleanup();
});

const readSome = (stream: NodeJS.ReadableStream, n: number) =>
  new Promise<string>((resolve) => {
    let text = '';
    stream.on('data', (d: Buffer) => {
      text += d.toString();
      if (text.length >= n) resolve(text);
    });
  });

describe('private egress through a tunnel', () => {
  it('opens a TCP stream to an IP inside the route, in its vnet', async () => {
    const { stream, route } = await edge.egress.open('tcp', vnets.lab, '127.0.0.1', echo.port);
    expect(route.network).toBe('127.0.0.1/32');
    const got = readSome(stream, 'hi\nping\n'.length);
    stream.write('ping\n');
    expect(await got).toBe('hi\nping\n');
    stream.end();
  });

  it('has no route in another vnet', async () => {
    await expect(edge.egress.open('tcp', vnets.other, '127.0.0.1', echo.port)).rejects.toMatchObject({ code: 'OXY_ERR_NO_ROUTE' });
  });

  it('reaches a route added with the CLI while running: the edge pushes it to the connector', async () => {
    await oxyOk(home, ['tunnel', 'route', 'ip', 'add', '--vnet', 'other', '127.0.0.0/30', 'dc1']);
    await new Promise((r) => setTimeout(r, 1000));
    const { stream } = await edge.egress.open('tcp', vnets.other, '127.0.0.1', echo.port);
    expect(await readSome(stream, 3)).toBe('hi\n');
    stream.destroy();
  });

  it('the connector refuses destinations outside the routes its tunnel serves, even if asked', async () => {
    const [tunnel] = await oxyJson<{ id: string }[]>(home, ['tunnel', 'list']);
    const live = edge.registry.pick(tunnel.id)!;
    const stream = await live.conn.openStream();
    stream.on('error', () => undefined);
    writeRequestHeader(stream, { kind: 'tcp', destination: `127.0.0.3:${echo.port}`, metadata: [['Vnet', vnets.lab]] });
    const answer = await readStreamHeader(stream, { expect: 'response' });
    expect(answer.status).toBe(ResponseStatus.FORBIDDEN);
    expect(answer.message).toContain('127.0.0.3 is not inside a route this tunnel serves');
    await connector.waitFor(/Refused private flow: 127\.0\.0\.3 is not inside a route/);
    stream.destroy();
  });

  it("--max-active-flows (cloudflared's flag for warp-routing maxActiveFlows) bounds flows at once", async () => {
    await oxyOk(home, ['vnet', 'add', 'capped']);
    await oxyOk(home, ['tunnel', 'create', 'dc2']);
    await oxyOk(home, ['tunnel', 'route', 'ip', 'add', '--vnet', 'capped', '127.0.0.1/32', 'dc2']);
    const capped = (await oxyJson<{ id: string; name: string }[]>(home, ['vnet', 'list'])).find((v) => v.name === 'capped')!.id;
    const { connector: c2 } = await startConnector(home, edge.tunnelAddresses[0].address.port, ['--hello-world', '--max-active-flows', '1', 'dc2'], 1);
    try {
      const first = await edge.egress.open('tcp', capped, '127.0.0.1', echo.port);
      expect(await readSome(first.stream, 3)).toBe('hi\n');
      await expect(edge.egress.open('tcp', capped, '127.0.0.1', echo.port)).rejects.toThrow(/too many active flows \(maxActiveFlows 1\)/);
      first.stream.destroy();
    } finally {
      await c2.stop();
    }
  });
});
