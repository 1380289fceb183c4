// Issue 12 item 8: `tunnel delete --force` on a tunnel with live connections takes them down.
// The edge notices the deletion at its next store reload and closes each connection; the
// connector's re-registration is refused (the tunnel is gone), so it stops.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { request } from 'undici';
import { oxyOk, tempHome } from '../../helpers/cli.js';
import { OxyProcess, startConnector, startEdge } from '../../helpers/processes.js';

let home: { home: string; cleanup: () => void };
const procs: OxyProcess[] = [];

beforeAll(() => {
  home = tempHome();
});
afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop('SIGKILL')));
  home?.cleanup();
});

it('tunnel delete --force closes the live connections of the tunnel', async () => {
  await oxyOk(home.home, ['tunnel', 'create', 'web']);
  await oxyOk(home.home, ['tunnel', 'route', 'dns', 'web', 'app.example.com']);
  const e = await startEdge(home.home);
  procs.push(e.edge);
  const { connector } = await startConnector(home.home, e.tunnelPort, ['--hello-world', 'web'], 4);
  procs.push(connector);
  const get = () => request(`http://127.0.0.1:${e.httpPort}/`, { headers: { host: 'app.example.com' } }).then(async (r) => (await r.body.dump(), r.statusCode));
  expect(await get()).toBe(200);

  await oxyOk(home.home, ['tunnel', 'delete', '--force', 'web']);
  await expect.poll(() => e.edge.count(/Tunnel deleted; closing its connection/), { timeout: 30_000 }).toBe(4);
  expect(await connector.exited()).not.toBe(0);
  expect(e.edge.count(/Unregistered tunnel connection/)).toBe(4);
  expect(await get()).toBe(404);
});
