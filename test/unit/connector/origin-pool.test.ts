// Issue 12 item 8: after a burst of concurrent requests the connector kept one idle origin
// socket per request (3,988 after 5,000 streams) for longer than keepAliveTimeout. Idle
// connections per origin service are bounded by keepAliveConnections and live at most
// keepAliveTimeout, as cloudflared's originRequest says; concurrency stays unbounded.
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, expect, it } from 'vitest';
import { Ingress } from '../../../src/engine/connector/ingress.js';
import { OriginProxy } from '../../../src/engine/connector/origin.js';
import { createLogger } from '../../../src/engine/observe/log.js';

const log = createLogger({ level: 'silent' });
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

/** An origin that holds each answer until `release()`, so the burst is truly concurrent; counts its open sockets. */
async function origin(): Promise<{ port: number; open: () => number; release: () => void; waiting: () => number }> {
  const sockets = new Set<Socket>();
  let held: (() => void)[] = [];
  let released = false;
  const server: Server = createServer({ keepAliveTimeout: 75_000 }, (_req, res) => {
    const answer = () => res.end('ok');
    if (released) answer();
    else held.push(answer);
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => {
    server.closeAllConnections();
    return new Promise((r) => server.close(r));
  });
  return {
    port: (server.address() as AddressInfo).port,
    open: () => sockets.size,
    waiting: () => held.length,
    release: () => {
      released = true;
      for (const fn of held) fn();
      held = [];
    },
  };
}

async function burst(proxy: OriginProxy, n: number): Promise<number[]> {
  const rule = proxy.ingress.match('app.example.com', '/');
  return Promise.all(
    Array.from({ length: n }, async () => {
      const res = await proxy.proxyHttp(rule, { method: 'GET', host: 'app.example.com', path: '/', headers: [] }, null);
      await res.body?.resume().once('end', () => undefined);
      return res.head.status;
    }),
  );
}

it('a burst of 300 concurrent requests leaves at most keepAliveConnections idle origin sockets; later requests still work', async () => {
  const o = await origin();
  const proxy = new OriginProxy(Ingress.parse([{ service: `http://127.0.0.1:${o.port}` }], { keepAliveConnections: 10 }), log);
  cleanups.push(() => proxy.close());
  const done = burst(proxy, 300);
  await expect.poll(() => o.waiting(), { timeout: 10_000 }).toBe(300); // all 300 at the origin at once: unbounded concurrency
  o.release();
  expect(new Set(await done)).toEqual(new Set([200]));
  await expect.poll(() => o.open(), { timeout: 5000 }).toBeLessThanOrEqual(10);
  expect(new Set(await burst(proxy, 50))).toEqual(new Set([200]));
  await expect.poll(() => o.open(), { timeout: 5000 }).toBeLessThanOrEqual(10);
});

it('idle origin sockets close after keepAliveTimeout, whatever Keep-Alive hint the origin sends', async () => {
  const o = await origin(); // hints timeout=75
  o.release();
  const proxy = new OriginProxy(Ingress.parse([{ service: `http://127.0.0.1:${o.port}` }], { keepAliveTimeout: '500ms' }), log);
  cleanups.push(() => proxy.close());
  expect(new Set(await burst(proxy, 20))).toEqual(new Set([200]));
  expect(o.open()).toBeGreaterThan(0);
  await expect.poll(() => o.open(), { timeout: 3000 }).toBe(0);
});
