// Issue 16: a keep-alive HTTP/1.1 client connection rides one http1 tunnel stream (WIRE.md §7)
// instead of one stream per request. What a client relies on stays: each request picks its own
// ingress rule (a rule change mid-connection reaches the other service), pipelined requests are
// answered in order, X-Forwarded-For names the client, a request the fast path does not take
// (an unknown host: the 404 page) hands the connection to the per-request path, which keeps
// serving it; and a connector that does not announce http1 streams (an older peer) is served
// with a stream per request.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { oxyOk, tempHome } from '../../helpers/cli.js';
import { tail } from '../../helpers/attempts.js';
import { until } from '../../helpers/until.js';
import { OxyProcess, PROTOCOLS, startConnector, startEdge } from '../../helpers/processes.js';

/** An origin that names itself and what it saw of each request. */
async function namedOrigin(name: string): Promise<{ server: Server; port: number; seen: IncomingMessage[] }> {
  const seen: IncomingMessage[] = [];
  const server = createServer((req, res) => {
    seen.push(req);
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => res.end(`${name} ${req.method} ${req.url} body=${body} xff=${req.headers['x-forwarded-for']}`));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port, seen };
}

/** Writes `text` on one connection and collects responses until `count` bodies arrived (Content-Length framed). */
function exchange(port: number, writes: string[], count: number): Promise<{ status: number; headers: string; body: string }[]> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    const got: { status: number; headers: string; body: string }[] = [];
    let buf = '';
    const timer = setTimeout(() => (s.destroy(), reject(new Error(`only ${got.length} answers: ${buf}`))), 10_000);
    s.setEncoding('latin1');
    s.on('error', reject);
    s.on('data', (d: string) => {
      buf += d;
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) break;
        const head = buf.slice(0, end);
        const length = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
        if (buf.length < end + 4 + length) break;
        got.push({ status: Number(head.slice(9, 12)), headers: head, body: buf.slice(end + 4, end + 4 + length) });
        buf = buf.slice(end + 4 + length);
      }
      if (got.length >= count) {
        clearTimeout(timer);
        s.end();
        resolve(got);
      }
    });
    let i = 0;
    const next = (): void => {
      if (i < writes.length) s.write(writes[i++], 'latin1');
    };
    s.on('connect', next);
    // One write per answer after the first: requests of one connection, one after another.
    s.on('data', () => setImmediate(next));
  });
}

const get = (path: string, host = 'app.example.com') => `GET ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`;

describe.each(PROTOCOLS)('one tunnel stream per client connection, over %s', (protocol) => {
  let home: { home: string; cleanup: () => void };
  const procs: OxyProcess[] = [];
  let httpPort: number;
  let oldPort: number;
  let a: Awaited<ReturnType<typeof namedOrigin>>;
  let b: Awaited<ReturnType<typeof namedOrigin>>;

  beforeAll(async () => {
    home = tempHome();
    a = await namedOrigin('A');
    b = await namedOrigin('B');
    for (const t of ['web', 'old']) await oxyOk(home.home, ['tunnel', 'create', t]);
    await oxyOk(home.home, ['tunnel', 'route', 'dns', 'web', 'app.example.com']);
    await oxyOk(home.home, ['tunnel', 'route', 'dns', 'old', 'old.example.com']);
    const config = join(home.home, 'web.yml');
    writeFileSync(
      config,
      `ingress:\n  - hostname: app.example.com\n    path: ^/b\n    service: http://127.0.0.1:${b.port}\n  - service: http://127.0.0.1:${a.port}\n`,
    );
    const e = await startEdge(home.home);
    procs.push(e.edge);
    httpPort = e.httpPort;
    procs.push((await startConnector(home.home, e.tunnelPort, ['--config', config, 'web'], 2, protocol)).connector);
    // An older connector: it announces no http1 streams (the knob the bench uses to turn them off).
    const old = new OxyProcess(
      home.home,
      ['tunnel', 'run', '--edge', `127.0.0.1:${e.tunnelPort}`, '--protocol', protocol, '--ha-connections', '1', '--url', `http://127.0.0.1:${a.port}`, 'old'],
      {
        OXY_HTTP1_STREAMS: '0',
      },
    );
    procs.push(old);
    await old.waitFor(/Registered tunnel connection connIndex=0 /);
    oldPort = httpPort;
  });

  afterAll(async () => {
    await Promise.all(procs.map((p) => p.stop('SIGKILL')));
    a.server.closeAllConnections();
    b.server.closeAllConnections();
    a.server.close();
    b.server.close();
    home.cleanup();
  });

  it('each request of a keep-alive connection reaches its own rule’s service, with a body and X-Forwarded-For', async () => {
    const post = 'POST /a HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 5\r\n\r\nhello';
    const answers = await exchange(httpPort, [get('/a'), get('/b1'), post, get('/b2'), get('/a?q=1')], 5);
    expect(answers.map((r) => r.body.replace(/ xff=.*/, ''))).toEqual([
      'A GET /a body=',
      'B GET /b1 body=',
      'A POST /a body=hello',
      'B GET /b2 body=',
      'A GET /a?q=1 body=',
    ]);
    // Each answer that is not a 200 with the client's address (the list names them, not just "false").
    expect(answers.filter((r) => r.status !== 200 || !r.body.endsWith('xff=127.0.0.1'))).toEqual([]);
  });

  it('a body that comes over several writes reaches the origin whole, and the connection goes on', async () => {
    const body = 'x'.repeat(100_000);
    const head = `POST /large HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: ${body.length}\r\n\r\n`;
    const seen = a.seen.length;
    const s = net.connect(httpPort, '127.0.0.1');
    let got = '';
    s.setEncoding('latin1');
    s.on('data', (d: string) => (got += d));
    await new Promise((r) => s.once('connect', r));
    s.write(head + body.slice(0, 10));
    // The origin has the request (head and first bytes) before the rest of the body is sent.
    await expect.poll(() => a.seen.length, { timeout: 10_000 }).toBe(seen + 1);
    s.write(body.slice(10) + get('/after'));
    await until(
      () => got.includes('A GET /after '),
      10_000,
      () => `the answer to /after on the same connection; read so far: ${tail(got)}`,
    );
    s.destroy();
    expect(got).toContain(`A POST /large body=${body} xff=127.0.0.1`);
  });

  it('pipelined requests in one write are answered in order', async () => {
    const answers = await exchange(httpPort, [get('/p1') + get('/b/p2') + get('/p3')], 3);
    expect(answers.map((r) => r.body.split(' ').slice(0, 3).join(' '))).toEqual(['A GET /p1', 'B GET /b/p2', 'A GET /p3']);
    // A client may write many at once (a Node https server closed after 1 of 300: docs/decisions.md session 15).
    const paths = Array.from({ length: 300 }, (_, i) => (i % 3 ? `/p${i}` : `/b/p${i}`));
    const many = await exchange(httpPort, [paths.map((p) => get(p)).join('')], 300);
    expect(many.map((r) => r.body.split(' ').slice(0, 3).join(' '))).toEqual(paths.map((p) => `${p.startsWith('/b') ? 'B' : 'A'} GET ${p}`));
  });

  it('a request the fast path does not take (no route: the 404 page) is answered, and the connection goes on', async () => {
    const answers = await exchange(httpPort, [get('/one'), get('/', 'nowhere.example.com'), get('/two')], 3);
    expect(answers.map((r) => r.status)).toEqual([200, 404, 200]);
    expect(answers[1].headers).toMatch(/proxy-status: /i);
    expect(answers[2].body).toMatch(/^A GET \/two /);
  });

  it('the origin closing its idle keep-alive socket does not fail the next request of the client connection', async () => {
    // The spliced origin socket closes (the origin's keep-alive timeout); the connector ends the
    // stream, and the client's next request goes on a new one.
    a.server.keepAliveTimeout = 100;
    const closed = new Promise<void>((resolve) => a.server.once('connection', (s: net.Socket) => s.once('close', () => resolve())));
    try {
      const s = net.connect(httpPort, '127.0.0.1');
      const replies: string[] = [];
      let buf = '';
      s.setEncoding('latin1');
      const answered = (n: number) =>
        new Promise<void>((resolve) => {
          const check = (): void => {
            const parts = buf.split(/(?=HTTP\/1\.1 )/);
            if (parts.length >= n && /\r\n\r\n[AB] GET/.test(parts[n - 1])) {
              s.off('data', check);
              resolve();
            }
          };
          s.on('data', check);
          check();
        });
      s.on('data', (d: string) => (buf += d));
      await new Promise((r) => s.once('connect', r));
      s.write(get('/k1'));
      await answered(1);
      await closed;
      s.write(get('/k2'));
      await answered(2);
      replies.push(...buf.split(/(?=HTTP\/1\.1 )/).map((r) => r.slice(0, 12)));
      s.destroy();
      expect(replies).toEqual(['HTTP/1.1 200', 'HTTP/1.1 200']);
      expect(buf).toContain('A GET /k2');
    } finally {
      a.server.keepAliveTimeout = 5000;
    }
  });

  it('a connector without http1 streams (an older peer) gets a stream per request', async () => {
    const answers = await exchange(oldPort, [get('/x', 'old.example.com'), get('/y', 'old.example.com')], 2);
    expect(answers.map((r) => r.body.replace(/ xff=.*/, ''))).toEqual(['A GET /x body=', 'A GET /y body=']);
  });
});
