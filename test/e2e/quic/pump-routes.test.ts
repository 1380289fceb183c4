// Heads the connector's pump writes itself (cpp/quic-pump.cc PumpFastHead): once a request's head
// went to a pumped origin socket through JS, the pump routes the next heads of the same host
// (any host when the ingress has one rule) to that socket without JS, when the rule is picked by
// the host alone. Processes and real sockets, the same steps with OXY_QUIC_HEADS=js (every head
// through JS) for the same results: requests on one client connection that switch between hosts
// and rules (host rules, a path rule, the catch-all), uploads on the routed path byte-exact;
// hostile origins on the routed path (an idle close as the request comes: sent again; a request
// dropped twice: 502; closed mid-upload: 502; garbage; bytes past the answer); clients that go
// away mid-request and mid-upload; a graceful stop with a kept-alive client; the counters after.
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { oxyOk } from '../../helpers/cli.js';
import { useWebTunnel } from '../../helpers/processes.js';
import { Client, quicTunnel, sha256hex } from './support.js';

const t = useWebTunnel();
const MIB = randomBytes(1024 * 1024);
const UPLOAD = randomBytes(8 * 1024 * 1024);

/** What each origin received: "NAME host path" per request, in order. */
const seen: string[] = [];
const origins: Server[] = [];
const url = { a: '', b: '' };

function startOrigin(name: string): Promise<string> {
  /** Requests each origin connection has answered (the idle-close case drops its second one). */
  const served = new WeakMap<Socket, number>();
  const server = createServer((req: IncomingMessage, res) => {
    seen.push(`${name} ${req.headers.host} ${req.url}`);
    const socket = req.socket;
    const n = served.get(socket) ?? 0;
    served.set(socket, n + 1);
    if (req.url === '/drop-second' && n > 0) return void socket.destroy();
    if (req.url === '/drop') return void socket.destroy();
    if (req.url === '/garbage') return void socket.end('NOT HTTP AT ALL\r\n\r\n');
    if (req.url === '/extra') return void socket.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA BYTES');
    if (req.url === '/slow') return void setTimeout(() => res.end('slow'), 500);
    if (req.url === '/close-up') {
      let bytes = 0;
      req.on('data', (c: Buffer) => {
        if ((bytes += c.length) >= MIB.length && !socket.destroyed) socket.destroy();
      });
      return;
    }
    if (req.method === 'POST') {
      const hash = createHash('sha256');
      let bytes = 0;
      req.on('data', (c: Buffer) => ((bytes += c.length), hash.update(c)));
      req.on('end', () => res.end(`${name} ${bytes} ${hash.digest('hex')}`));
      req.on('error', () => undefined);
      return;
    }
    res.end(`${name} ${req.headers.host} ${req.url}`);
  });
  origins.push(server);
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)));
}

beforeAll(async () => {
  url.a = await startOrigin('A');
  url.b = await startOrigin('B');
});
afterAll(() => {
  for (const o of origins) {
    o.closeAllConnections();
    o.close();
  }
});

/** Heads the connector's pumps wrote to their origins without JS (its debug lines, once each stream ended). */
const fastHeads = (output: string): number =>
  [...output.matchAll(/(\d+) request heads went to the origin without JS/g)].reduce((sum, m) => sum + Number(m[1]), 0);

const metric = async (port: number, name: string): Promise<number> => {
  const text = await request(`http://127.0.0.1:${port}/metrics`).then((r) => r.body.text());
  const m = new RegExp(`^oxyctl_tunnel_${name.replace(/[{}]/g, '\\$&')} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : Number.NaN;
};

const HOSTS = ['a.example.com', 'b.example.com', 'p.example.com'];

describe.each(['routed', 'js'] as const)('http1 heads routed by the connector pump (%s)', (mode) => {
  const env = { OXY_QUIC_IMPL: 'ngtcp2', NODE_DEBUG: 'oxy:connector:http1', ...(mode === 'js' ? { OXY_QUIC_HEADS: 'js' } : {}) };
  const tunnel = async (config?: string) => {
    const e = await quicTunnel(t, url.a, { connections: 1, connectorEnv: env, config });
    const metrics = Number((await e.connector.waitFor(/Starting metrics server on \/metrics address=127\.0\.0\.1:(\d+)/))[1]);
    return { ...e, metrics };
  };
  const expectFast = async (output: () => string, atLeast: number) => {
    if (mode === 'routed') await expect.poll(() => fastHeads(output()), { timeout: 10_000 }).toBeGreaterThanOrEqual(atLeast);
    else {
      await new Promise((r) => setTimeout(r, 300));
      expect(fastHeads(output())).toBe(0);
    }
  };

  it('requests on one connection switch hosts and rules; each reaches its origin once, uploads byte-exact', async () => {
    for (const host of HOSTS) await oxyOk(t.home, ['tunnel', 'route', 'dns', 'web', host]);
    const config = join(t.home, 'rules.yml');
    writeFileSync(
      config,
      `ingress:\n  - hostname: a.example.com\n    service: ${url.a}\n  - hostname: b.example.com\n    service: ${url.b}\n` +
        `  - hostname: p.example.com\n    path: ^/x\n    service: ${url.b}\n  - service: ${url.a}\n`,
    );
    const e = await tunnel(config);
    seen.length = 0;
    const c = new Client(e.httpPort);
    const want: string[] = [];
    const step = async (host: string, path: string, origin: 'A' | 'B') => {
      expect((await c.get(host, path))?.body, `${host}${path}`).toBe(`${origin} ${host} ${path}`);
      want.push(`${origin} ${host} ${path}`);
    };
    for (let i = 0; i < 30; i++) await step('a.example.com', `/a${i}`, 'A');
    for (let i = 0; i < 30; i++) await step('b.example.com', `/b${i}`, 'B');
    for (let i = 0; i < 10; i++) {
      await step('a.example.com', `/ab${i}`, 'A');
      await step('b.example.com', `/ba${i}`, 'B');
    }
    // A path rule: p.example.com's rule is picked by the path too, every head through JS.
    for (let i = 0; i < 5; i++) {
      await step('p.example.com', `/x${i}`, 'B');
      await step('p.example.com', `/y${i}`, 'A');
    }
    // The catch-all for a host no rule names (picked by the host alone), then uploads on that route.
    for (let i = 0; i < 10; i++) await step('app.example.com', `/c${i}`, 'A');
    const sum = `A ${UPLOAD.length} ${sha256hex(UPLOAD)}`;
    for (const chunked of [false, true, false]) {
      c.send('app.example.com', 'POST', '/up', UPLOAD, chunked);
      expect((await c.answer())?.body).toBe(sum);
      want.push(`A app.example.com /up`);
      await step('app.example.com', '/after-up', 'A');
    }
    c.close();
    expect(seen).toEqual(want);
    await expectFast(() => e.connector.output, 60);
    expect(e.connector.child.exitCode).toBeNull();
  }, 90_000);

  it('hostile origins on the routed path: an idle close is sent again, a drop answers 502, garbage and extra bytes end the client connection; counters add up', async () => {
    const e = await tunnel();
    seen.length = 0;
    const host = 'app.example.com';
    let requests = 0;
    // A few requests first, so that the hostile one's head is routed (the pump armed and its route set).
    const warm = async (c: Client) => {
      for (let i = 0; i < 3; i++, requests++) expect((await c.get(host, `/w${i}`))?.status).toBe(200);
    };
    const k = new Client(e.httpPort);
    await warm(k);
    // The origin closes the kept connection as the (routed) request comes: sent once more, on a fresh connection.
    expect((await k.get(host, '/drop-second'))?.body).toBe(`A ${host} /drop-second`);
    await warm(k);
    // Dropped on the fresh connection too: the 502 page, and the client connection goes on.
    const dropped = await k.get(host, '/drop');
    expect(dropped?.status).toBe(502);
    expect(dropped?.body).toMatch(/not reachable/);
    await warm(k);
    k.send(host, 'POST', '/close-up', UPLOAD);
    expect((await k.answer())?.status).toBe(502);
    k.close();
    requests += 3;
    for (const path of ['/garbage', '/extra']) {
      const c = new Client(e.httpPort);
      await warm(c);
      c.send(host, 'GET', path);
      while ((await c.answer()) !== undefined);
      c.close();
      requests++;
    }
    const last = new Client(e.httpPort);
    expect((await last.get(host, '/ok4'))?.body).toBe(`A ${host} /ok4`);
    last.close();
    requests++;
    expect(seen.filter((s) => s.endsWith('/drop-second'))).toHaveLength(2);
    expect(seen.filter((s) => s.endsWith('/drop'))).toHaveLength(2);
    // Counted once each, the resent ones too; nothing left in flight once the clients left.
    await expect.poll(() => metric(e.metrics, 'total_requests'), { timeout: 10_000 }).toBe(requests);
    await expect.poll(() => metric(e.metrics, 'response_by_code{status_code="502"}'), { timeout: 10_000 }).toBe(2);
    await expect.poll(() => metric(e.metrics, 'concurrent_requests_per_tunnel'), { timeout: 10_000 }).toBe(0);
    await expectFast(() => e.connector.output, 8);
    expect(e.connector.child.exitCode).toBeNull();
  }, 90_000);

  it('clients that go away mid-request or mid-upload: the origin sees each request once, others are served', async () => {
    const e = await tunnel();
    seen.length = 0;
    const host = 'app.example.com';
    const gone = new Client(e.httpPort);
    expect((await gone.get(host, '/ok'))?.status).toBe(200);
    gone.send(host, 'GET', '/slow');
    await new Promise((r) => setTimeout(r, 50));
    gone.socket.destroy();
    const up = new Client(e.httpPort);
    expect((await up.get(host, '/ok'))?.status).toBe(200);
    up.socket.write(`POST /up HTTP/1.1\r\nHost: ${host}\r\nContent-Length: ${UPLOAD.length}\r\n\r\n`);
    up.socket.write(MIB);
    await new Promise((r) => setTimeout(r, 100));
    up.socket.destroy();
    const other = new Client(e.httpPort);
    for (let i = 0; i < 20; i++) expect((await other.get(host, `/o${i}`))?.body).toBe(`A ${host} /o${i}`);
    other.close();
    await new Promise((r) => setTimeout(r, 700));
    expect(seen.filter((s) => s.endsWith('/slow'))).toHaveLength(1);
    expect(seen.filter((s) => s.endsWith('/up'))).toHaveLength(1);
    await expect.poll(() => metric(e.metrics, 'total_requests'), { timeout: 10_000 }).toBe(24);
    await expect.poll(() => metric(e.metrics, 'concurrent_requests_per_tunnel'), { timeout: 10_000 }).toBe(0);
    await expectFast(() => e.connector.output, 15);
  }, 60_000);

  it('a graceful stop: a kept-alive client on a routed stream gets no more requests to the origin, and the connector leaves', async () => {
    const e = await tunnel();
    seen.length = 0;
    const host = 'app.example.com';
    const k = new Client(e.httpPort);
    for (let i = 0; i < 5; i++) expect((await k.get(host, `/k${i}`))?.status).toBe(200);
    e.connector.child.kill('SIGTERM');
    await e.connector.waitFor(/Initiating graceful shutdown/);
    const after = await k.get(host, '/after-stop');
    expect(after?.status ?? 0).not.toBe(200);
    expect(seen.filter((s) => s.endsWith('/after-stop'))).toHaveLength(0);
    expect(await e.connector.exited()).toBe(0);
    k.socket.destroy();
  }, 60_000);
});
