import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { ConnectionStats } from '../../../src/engine/hooks/index.js';
import { curl, startOrigin, startTunnelEdge, type Origin, type TunnelEdge } from './support.js';
import { until } from '../../helpers/until.js';

// The HTTP hooks on the public-hostname on-ramp (edge --http-listen → tunnel → connector →
// origin), with curl as the client: head rewrites both ways, streaming body rewrites,
// answers made by the hook, a throwing hook, and upgrades (heads only, no body rewrites).

async function* upper(chunks: AsyncIterable<Buffer>) {
  for await (const c of chunks) yield c.toString().toUpperCase();
}

let origin: Origin;
let e: TunnelEdge;
const admitted: { onramp: string; client: string }[] = [];
const closed = new Map<number, ConnectionStats>();

beforeAll(async () => {
  origin = await startOrigin();
  e = await startTunnelEdge(
    {
      ingress: {
        handleConnection: (ctx) => void admitted.push({ onramp: ctx.onramp, client: ctx.client.address }),
        handleConnectionClose: (stats, ctx) => void closed.set(ctx.client.port, stats),
      },
      http: {
        handleRequest(head) {
          const url = new URL(head.url);
          if (url.pathname === '/forbidden') return { respond: { status: 403, headers: [['x-why', 'policy']], body: 'not for you\n' } };
          if (url.pathname === '/boom') throw new Error('request hook exploded');
          if (url.pathname.startsWith('/old/')) url.pathname = url.pathname.replace('/old/', '/new/');
          head.url = url.href;
          head.headers.push(['X-Rewritten', 'yes']);
          head.headers = head.headers.filter(([k]) => k.toLowerCase() !== 'x-secret');
          // A body rewrite on the WebSocket request too: it must be ignored there.
          return head.method === 'POST' || url.pathname === '/ws' ? { body: upper } : undefined;
        },
        handleResponse(head) {
          head.headers.push(['X-Edge', 'public-hostname']);
          return head.status === 200 ? { body: upper } : undefined;
        },
      },
    },
    origin.port,
  );
});
afterAll(async () => {
  await e?.close();
  await origin?.close();
});

const at = (path: string) => [`-H`, `Host: ${e.hostname}`, `${e.http}${path}`];

describe('HTTP hooks on the public-hostname listener (curl → edge → tunnel → origin)', () => {
  it('rewrites the request head the origin sees and the response head and body the client gets', async () => {
    const r = await curl(['-i', '-H', 'X-Secret: hush', ...at('/old/page?q=1')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^HTTP\/1\.1 200/);
    expect(r.stdout).toMatch(/\r\nx-edge: public-hostname\r\n/i);
    const seen = origin.seen.at(-1)!;
    expect(seen.url).toBe('/new/page?q=1');
    expect(seen.headers['x-rewritten']).toBe('yes');
    expect(seen.headers['x-secret']).toBeUndefined();
    expect(seen.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen.headers.host).toBe(e.hostname);
    // The response body went through the rewrite (upper case), so it is the origin's JSON upper-cased.
    const body = r.stdout.slice(r.stdout.indexOf('\r\n\r\n') + 4);
    expect(body).toBe(JSON.stringify(seen).toUpperCase());
    expect(admitted.at(-1)).toEqual({ onramp: 'public-hostname', client: '127.0.0.1' });
  });

  it('rewrites bodies as they stream: the upload, and a response whose chunks arrive spread over time', async () => {
    const up = await curl(['--data-binary', 'hello body', ...at('/upload')]);
    expect(up.code, up.stderr).toBe(0);
    expect(origin.seen.at(-1)).toMatchObject({ method: 'POST', body: 'HELLO BODY' });

    const arrivals: number[] = [];
    const down = await curl(['--no-buffer', ...at('/chunks')], { onData: () => arrivals.push(Date.now()) });
    expect(down.code, down.stderr).toBe(0);
    expect(down.stdout).toBe('CHUNK 0\nCHUNK 1\nCHUNK 2\nCHUNK 3\n');
    expect(arrivals.length).toBeGreaterThanOrEqual(3);
    expect(arrivals.at(-1)! - arrivals[0]).toBeGreaterThanOrEqual(250);
  });

  it("answers with the hook's 403 without reaching the origin", async () => {
    const before = origin.seen.length;
    const r = await curl(['-i', ...at('/forbidden')]);
    expect(r.stdout).toMatch(/^HTTP\/1\.1 403/);
    expect(r.stdout).toMatch(/\r\nx-why: policy\r\n/i);
    expect(r.stdout).toMatch(/not for you\n$/);
    expect(origin.seen.length).toBe(before);
  });

  it('a throwing handleRequest fails only its request (502, log line naming the hook); the next one on the same connection works', async () => {
    const before = origin.seen.length;
    // Two URLs in one curl: the second reuses the first's connection (num_connects 0).
    const r = await curl([
      '-H',
      `Host: ${e.hostname}`,
      '-o',
      '/dev/null',
      '-w',
      '%{http_code} %{num_connects}\\n',
      `${e.http}/boom`,
      '-o',
      '/dev/null',
      `${e.http}/fine`,
    ]);
    expect(r.stdout.trim().split('\n')).toEqual(['502 1', '200 0']);
    expect(e.logs.text()).toMatch(/ERR Hook failed; failing its request connection=\d+ hook=http\.handleRequest error="request hook exploded"/);
    expect(origin.seen.slice(before).map((s) => s.url)).toEqual(['/fine']);
  });

  it('WebSocket upgrades: heads go through the hooks, the messages are not rewritten', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${e.httpPort}/ws`, { headers: { host: e.hostname } });
    const upgrade = new Promise<Record<string, string | string[] | undefined>>((resolve) => ws.once('upgrade', (res) => resolve(res.headers)));
    await new Promise((resolve, reject) => (ws.once('open', resolve), ws.once('error', reject)));
    expect((await upgrade)['x-edge']).toBe('public-hostname');
    expect(origin.seen.at(-1)!.headers['x-rewritten']).toBe('yes');
    const echoed = new Promise<string>((resolve) => ws.once('message', (m) => resolve(m.toString())));
    ws.send('mixed Case message');
    expect(await echoed).toBe('mixed Case message');
    ws.close();
    await expect.poll(() => e.logs.text()).toMatch(/WRN Body rewrite ignored on an upgrade request connection=\d+ hook=http\.handleRequest/);
  });

  it('ends each connection with ingress.handleConnectionClose and its statistics', async () => {
    const r = await curl(['-w', '\n%{local_port}', ...at('/stats')]);
    expect(r.code, r.stderr).toBe(0);
    const [body, port] = [r.stdout.slice(0, r.stdout.lastIndexOf('\n')), Number(r.stdout.slice(r.stdout.lastIndexOf('\n') + 1))];
    await until(
      () => closed.has(port),
      1000,
      () => `handleConnectionClose for the client's port ${port}; closes seen for ports: ${[...closed.keys()].join(', ') || 'none'}`,
    );
    const stats = closed.get(port)!;
    expect(stats.reason).toBe('closed');
    expect(stats.bytesIn).toBeGreaterThan(0);
    expect(stats.bytesOut).toBeGreaterThan(Buffer.byteLength(body));
    // Loopback loses nothing: the kernel's TCP_INFO, read as the socket closed, says so (a loaded
    // loopback may still send a tail-loss probe or two, as retransmits.test.ts allows).
    expect(stats.retransmits).toBeLessThanOrEqual(3);
    expect(stats.rttMs).toBeGreaterThan(0);
  });
});
