import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { curl, startOrigin, startProxyEdge, type Origin, type ProxyEdge } from './support.js';

// http.handleRequest / handleResponse on absolute-form requests: head rewrites, streaming body rewrites, local answers.
let origin: Origin;
let p: ProxyEdge;

async function* upper(chunks: AsyncIterable<Buffer>) {
  for await (const c of chunks) yield c.toString().toUpperCase();
}

beforeAll(async () => {
  origin = await startOrigin();
  p = await startProxyEdge({
    http: {
      handleRequest(head) {
        const url = new URL(head.url);
        if (url.pathname === '/blocked') return { respond: { status: 451, headers: [['x-why', 'policy']], body: 'not here\n' } };
        if (url.pathname.startsWith('/old/')) url.pathname = url.pathname.replace('/old/', '/new/');
        head.url = url.href;
        head.headers.push(['X-Rewritten', 'yes']);
        head.headers = head.headers.filter(([k]) => k.toLowerCase() !== 'x-secret');
        return head.method === 'POST' ? { body: upper } : undefined;
      },
      handleResponse(head) {
        head.headers.push(['X-Proxied-By', 'oxyctl-test']);
        return {
          body: async function* (chunks) {
            yield '[';
            for await (const c of chunks) yield c;
            yield ']';
          },
        };
      },
    },
  });
});
afterAll(async () => {
  await p?.close();
  await origin?.close();
});

describe('HTTP request and response hooks (curl -x, absolute-form)', () => {
  it('rewrites the path and headers the origin sees, and the response head and body the client gets', async () => {
    const r = await curl(['-i', '-x', p.proxy, '-H', 'X-Secret: hush', `http://127.0.0.1:${origin.port}/old/page?q=1`]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/x-proxied-by: oxyctl-test/i);
    const body = r.stdout.slice(r.stdout.indexOf('\r\n\r\n') + 4);
    expect(body.startsWith('[') && body.endsWith(']')).toBe(true);
    const seen = JSON.parse(body.slice(1, -1));
    expect(seen.url).toBe('/new/page?q=1');
    expect(seen.headers['x-rewritten']).toBe('yes');
    expect(seen.headers['x-secret']).toBeUndefined();
  });

  it('streams a rewritten request body', async () => {
    const r = await curl(['-x', p.proxy, '--data-binary', 'hello body', `http://127.0.0.1:${origin.port}/upload`]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.slice(1, -1))).toMatchObject({ method: 'POST', body: 'HELLO BODY' });
  });

  it('answers locally without an upstream', async () => {
    const before = origin.seen.length;
    const r = await curl(['-i', '-x', p.proxy, `http://127.0.0.1:${origin.port}/blocked`]);
    expect(r.stdout).toMatch(/^HTTP\/1\.1 451/);
    expect(r.stdout).toMatch(/x-why: policy/i);
    expect(r.stdout).toMatch(/not here/);
    expect(origin.seen.length).toBe(before);
  });
});
