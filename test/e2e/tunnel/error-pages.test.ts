// Issue 12 items 3 and 8: what a visitor gets when something behind the edge fails. A 502
// arrives at once with its body (the connector once announced a length and sent nothing: the
// client hung until keep-alive timeout), carries an RFC 9209 Proxy-Status error type, and
// says nothing internal (no tunnel IDs, addresses or transport errors); two Host headers are
// refused with a 400.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { oxyJson, oxyOk, tempHome } from '../../helpers/cli.js';
import { OxyProcess, PROTOCOLS, freePort, startConnector, startEdge } from '../../helpers/processes.js';
import { probe } from '../hostile/support.js';

let home: { home: string; cleanup: () => void };
const procs: OxyProcess[] = [];
let edge: Awaited<ReturnType<typeof startEdge>>;
let tunnelIds: string[] = [];

beforeAll(async () => {
  home = tempHome();
  for (const name of ['web', 'idle']) await oxyOk(home.home, ['tunnel', 'create', name]);
  await oxyOk(home.home, ['tunnel', 'route', 'dns', 'web', 'down.example.com']);
  await oxyOk(home.home, ['tunnel', 'route', 'dns', 'idle', 'idle.example.com']);
  tunnelIds = (await oxyJson<{ id: string }[]>(home.home, ['tunnel', 'list'])).map((t) => t.id);
  edge = await startEdge(home.home);
  procs.push(edge.edge);
});

afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop('SIGKILL')));
  home?.cleanup();
});

/** Nothing a visitor should learn: tunnel IDs, loopback addresses, Node error codes. */
const expectNoInternals = (text: string) => {
  for (const id of tunnelIds) expect(text).not.toContain(id);
  expect(text).not.toMatch(/127\.0\.0\.1|ECONN|ETIMEDOUT|Error|stream|undici/i);
};

describe.each(PROTOCOLS)('over %s', (protocol) => {
  let connector: OxyProcess;
  beforeAll(async () => {
    // The origin is down: nothing listens on its port.
    const down = await freePort();
    ({ connector } = await startConnector(home.home, edge.tunnelPort, ['--url', `http://127.0.0.1:${down}`, 'web'], 4, protocol));
  });
  afterAll(() => connector.stop('SIGKILL'));

  it('origin down: a 502 with its body at once, connection_refused, and the connection stays usable', async () => {
    const agent = new Agent({ connections: 1 });
    try {
      for (let i = 0; i < 3; i++) {
        const started = Date.now();
        const res = await request(`http://127.0.0.1:${edge.httpPort}/x`, {
          dispatcher: agent,
          headers: { host: 'down.example.com' },
          headersTimeout: 5000,
          bodyTimeout: 2000,
        });
        const body = await res.body.text();
        expect(Date.now() - started).toBeLessThan(2000);
        expect(res.statusCode).toBe(502);
        expect(res.headers['proxy-status']).toBe('oxyctl; error=connection_refused');
        expect(body).toBe('The origin for down.example.com is not reachable right now.\n');
        expect(res.headers['content-length']).toBe(String(body.length));
        expectNoInternals(body);
      }
    } finally {
      await agent.close();
    }
    // The details are in the connector's log.
    await connector.waitFor(/ERR Request failed error=.*ECONNREFUSED/);
  });
});

describe('public error pages', () => {
  it('two Host headers: 400 at once, before anything goes into a tunnel', async () => {
    const reply = (await probe(edge.httpPort, ['GET / HTTP/1.1\r\nHost: down.example.com\r\nHost: idle.example.com\r\n\r\n'], { holdMs: 300 })).toString();
    expect(reply).toMatch(/^HTTP\/1\.1 400 /);
    expect(reply).toContain('proxy-status: oxyctl; error=http_request_error');
    expect(reply).toContain('A request must have exactly one Host header.');
  });

  it('a tunnel with no connector: 502 destination_unavailable naming the host, not the tunnel', async () => {
    const res = await request(`http://127.0.0.1:${edge.httpPort}/`, { headers: { host: 'idle.example.com' } });
    const body = await res.body.text();
    expect(res.statusCode).toBe(502);
    expect(res.headers['proxy-status']).toBe('oxyctl; error=destination_unavailable');
    expect(body).toBe('No connector is serving idle.example.com right now.\n');
    expectNoInternals(body);
  });

  it('a hostname nobody routes: 404 destination_not_found', async () => {
    const res = await request(`http://127.0.0.1:${edge.httpPort}/`, { headers: { host: 'nobody.example.org' } });
    expect(res.statusCode).toBe(404);
    expect(res.headers['proxy-status']).toBe('oxyctl; error=destination_not_found');
    expect(await res.body.text()).toBe('No tunnel serves the hostname nobody.example.org.\n');
  });
});
