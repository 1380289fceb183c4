import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { oxyOk, tempHome } from '../../helpers/cli.js';
import { OxyProcess, startConnector, startEdge } from '../../helpers/processes.js';

let home: string;
let cleanup: () => void;
const procs: OxyProcess[] = [];
let httpPort: number;

beforeAll(async () => {
  ({ home, cleanup } = tempHome());
  await oxyOk(home, ['tunnel', 'create', 'web']);
  await oxyOk(home, ['tunnel', 'route', 'dns', 'web', 'app.example.com']);
  const e = await startEdge(home);
  procs.push(e.edge);
  httpPort = e.httpPort;
  const c = await startConnector(home, e.tunnelPort, ['--hello-world', 'web']);
  procs.push(c.connector);
});
afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop()));
  cleanup();
});

const get = (path: string, init: Parameters<typeof request>[1] = {}) =>
  request(`http://127.0.0.1:${httpPort}${path}`, { ...init, headers: { host: 'app.example.com', ...(init.headers as object) } });

describe('HTTP through the tunnel (hello world origin)', () => {
  it('GET', async () => {
    const res = await get('/hello?x=1');
    expect(res.statusCode).toBe(200);
    const text = await res.body.text();
    expect(text).toContain('Congrats! You created a tunnel!');
    expect(text).toContain('GET /hello?x=1');
    expect(text.toLowerCase()).toContain('x-forwarded-for: 127.0.0.1');
  });

  it('POST with a body, small and 20 MB, comes back intact', async () => {
    const small = await get('/echo', { method: 'POST', body: 'hello body', headers: { 'content-type': 'text/plain' } });
    expect(small.statusCode).toBe(200);
    expect(await small.body.text()).toBe('hello body');
    const big = randomBytes(20 * 1024 * 1024);
    const res = await get('/echo', { method: 'POST', body: big });
    const hash = createHash('sha256');
    for await (const chunk of res.body) hash.update(chunk);
    expect(hash.digest('hex')).toBe(createHash('sha256').update(big).digest('hex'));
  });
});
