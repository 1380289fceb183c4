// A connector SIGKILLed over QUIC tells the edge nothing: its connections look idle until the
// idle timeout (15 s). Once a replacement registers, traffic must move to it at once: the edge
// probes the tunnel's other connections and stops picking one that does not answer within 1 s.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect, it } from 'vitest';
import { request } from 'undici';
import { OxyProcess, useWebTunnel, startConnector, startEdge } from '../../helpers/processes.js';
import { clientLoad } from './client-load.js';

const t = useWebTunnel();

it('after a QUIC connector is SIGKILLed and restarted, requests sent 2 s after the new registration all succeed', async () => {
  const e = await startEdge(t.home);
  t.procs.push(e.edge);
  const first = await startConnector(t.home, e.tunnelPort, ['--hello-world', 'web'], 4, 'quic');
  t.procs.push(first.connector);
  const before = await request(`http://127.0.0.1:${e.httpPort}/`, { headers: { host: 'app.example.com' } });
  await before.body.dump();
  expect(before.statusCode).toBe(200);
  first.connector.kill();
  await first.connector.exited();
  const second = new OxyProcess(t.home, ['tunnel', 'run', '--edge', `127.0.0.1:${e.tunnelPort}`, '--protocol', 'quic', '--hello-world', 'web']);
  t.procs.push(second);
  // The edge registered the replacement's first connection; the dead one's still look idle.
  await e.edge.waitFor(/(Registered tunnel connection[^\n]*\n[\s\S]*){5}/);
  const registeredAt = Date.now();
  expect(e.edge.output).not.toContain('Unregistered tunnel connection');
  const traffic = clientLoad(e.httpPort);
  await new Promise((r) => setTimeout(r, 6000));
  await traffic.stop();
  const after = traffic.samples.filter((s) => s.at >= registeredAt + 2000);
  expect(after.length).toBeGreaterThan(10);
  expect(after.filter((s) => s.status !== 200)).toEqual([]);
}, 60_000);

// Requests already sent on the dead connections before anyone could tell: an idempotent one
// without a body is resent once the replacement answers; one with a body is never resent.
it('a GET sent to a SIGKILLed QUIC connector is answered by its replacement; a POST is not resent', async () => {
  const seen: string[] = [];
  const origin = createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    req.resume();
    req.on('end', () => res.end(`origin ${req.method} ${req.url}`));
  });
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(origin.address() as AddressInfo).port}`;
  try {
    const e = await startEdge(t.home);
    t.procs.push(e.edge);
    const first = await startConnector(t.home, e.tunnelPort, ['--url', url, 'web'], 4, 'quic');
    t.procs.push(first.connector);
    first.connector.kill();
    await first.connector.exited();
    const sentAt = Date.now();
    const send = (method: string, path: string, body?: string) =>
      request(`http://127.0.0.1:${e.httpPort}${path}`, { method, body, headers: { host: 'app.example.com' }, headersTimeout: 60_000 }).then(async (r) => ({
        status: r.statusCode,
        body: await r.body.text(),
        ms: Date.now() - sentAt,
      }));
    const get = send('GET', '/get');
    const post = send('POST', '/post', 'hello');
    const replacement = new OxyProcess(t.home, ['tunnel', 'run', '--edge', `127.0.0.1:${e.tunnelPort}`, '--protocol', 'quic', '--url', url, 'web']);
    t.procs.push(replacement);
    const registeredAt = replacement.waitFor(/Registered tunnel connection connIndex=0 /, 60_000).then(
      () => Date.now() - sentAt,
      () => 0,
    );
    // Answered by the replacement, well before the dead connections' 15 s idle timeout: counted
    // from the send or the replacement's registration, whichever came last (a connector's start
    // takes seconds under load).
    const got = await get;
    expect(got).toMatchObject({ status: 200, body: 'origin GET /get' });
    expect(got.ms - Math.max(0, await registeredAt)).toBeLessThan(10_000);
    expect(e.edge.output).toMatch(/INF Resending an idempotent request: its tunnel connection stopped answering host=app\.example\.com method=GET /);
    // The POST waited on its dead connection and failed there: the origin never saw it.
    expect((await post).status).toBe(502);
    expect(seen).toEqual(['GET /get']);
  } finally {
    origin.close();
  }
}, 120_000);
