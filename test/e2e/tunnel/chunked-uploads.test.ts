// Issue 16: chunked request bodies (Transfer-Encoding: chunked, what `curl -T -` sends) ride the
// http1 stream of their client connection like Content-Length bodies: the edge checks the chunk
// framing and passes the bytes on unchanged, a spliced origin de-chunks them itself, a rule
// relayed through undici gets them de-chunked by the connector. Byte-exact over the quick tunnel
// and over edge + connector, on HTTP/2 and QUIC: large bodies, many small chunks, trailers (they
// reach a spliced origin only on the fast path: the per-request path drops them, so they prove
// which path served), a request pipelined after a chunked one, a client that aborts mid-body, and
// framing that turns odd mid-body (400 and close, as Node's parser answers, nothing past it
// reaching the origin).
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { oxyOk, tempHome } from '../../helpers/cli.js';
import { OxyProcess, PROTOCOLS, startConnector, startEdge, tunnelRunArgs } from '../../helpers/processes.js';

const HOST = 'up.example.com';

interface Seen {
  path: string;
  te: string;
  bytes: number;
  sha: string;
  trailers: Record<string, string>;
  aborted: boolean;
}

/** An origin that answers each request with what it saw of its body (length, SHA-256, trailers) and records it. */
async function hashingOrigin(): Promise<{ server: Server; port: number; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    const h = createHash('sha256');
    let bytes = 0;
    let done = false;
    req.on('data', (d: Buffer) => {
      h.update(d);
      bytes += d.length;
    });
    req.on('error', () => undefined);
    req.on('close', () => {
      if (!done) seen.push({ path: req.url ?? '', te: '', bytes, sha: '', trailers: {}, aborted: true });
    });
    req.on('end', () => {
      done = true;
      const s: Seen = {
        path: req.url ?? '',
        te: req.headers['transfer-encoding'] ?? '-',
        bytes,
        sha: h.digest('hex'),
        trailers: req.trailers as Record<string, string>,
        aborted: false,
      };
      seen.push(s);
      res.end(JSON.stringify(s));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port, seen };
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** `body` as chunks of the given sizes (cycled), then the last chunk and `trailers`. */
function chunked(body: Buffer, sizes: number[], trailers = ''): Buffer {
  const parts: Buffer[] = [];
  for (let off = 0, i = 0; off < body.length; i++) {
    const n = Math.min(sizes[i % sizes.length], body.length - off);
    parts.push(Buffer.from(`${n.toString(16)}\r\n`), body.subarray(off, off + n), Buffer.from('\r\n'));
    off += n;
  }
  parts.push(Buffer.from(`0\r\n${trailers}\r\n`));
  return Buffer.concat(parts);
}

const head = (path: string, extra = '') => `POST ${path} HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\n${extra}\r\n`;

/** A client connection that collects Content-Length framed answers. */
class Client {
  readonly s: net.Socket;
  buf = '';
  closed = false;
  constructor(port: number) {
    this.s = net.connect(port, '127.0.0.1');
    this.s.setEncoding('latin1');
    this.s.on('data', (d: string) => (this.buf += d));
    this.s.on('error', () => undefined);
    this.s.on('close', () => (this.closed = true));
  }
  ready(): Promise<unknown> {
    return new Promise((r) => this.s.once('connect', r));
  }
  /** Writes `bytes` in pieces of `step`, each on its own event-loop turn (reads split where the client wrote). */
  async write(bytes: Buffer, step = bytes.length): Promise<void> {
    for (let off = 0; off < bytes.length; off += step) {
      if (!this.s.write(bytes.subarray(off, off + step))) await new Promise((r) => this.s.once('drain', r));
      else if (step < bytes.length) await new Promise((r) => setImmediate(r));
    }
  }
  answers(): { status: number; head: string; body: string }[] {
    const out: { status: number; head: string; body: string }[] = [];
    let rest = this.buf;
    for (;;) {
      const end = rest.indexOf('\r\n\r\n');
      if (end < 0) return out;
      const h = rest.slice(0, end);
      const length = Number(/content-length: (\d+)/i.exec(h)?.[1] ?? 0);
      if (rest.length < end + 4 + length) return out;
      out.push({ status: Number(h.slice(9, 12)), head: h, body: rest.slice(end + 4, end + 4 + length) });
      rest = rest.slice(end + 4 + length);
    }
  }
  async waitAnswers(n: number, timeout = 20_000): Promise<{ status: number; head: string; body: string }[]> {
    await expect.poll(() => this.answers().length, { timeout, message: `answers so far: ${this.buf.slice(0, 500)}` }).toBeGreaterThanOrEqual(n);
    return this.answers();
  }
}

type Setup = { name: string; port: () => number; relayedHost?: string };

describe.each(PROTOCOLS)('chunked uploads on http1 streams, over %s', (protocol) => {
  let home: { home: string; cleanup: () => void };
  let quickHome: { home: string; cleanup: () => void } | undefined;
  const procs: OxyProcess[] = [];
  let origin: Awaited<ReturnType<typeof hashingOrigin>>;
  let edgePort = 0;
  let quickPort = 0;

  beforeAll(async () => {
    home = tempHome();
    origin = await hashingOrigin();
    await oxyOk(home.home, ['tunnel', 'create', 'up']);
    await oxyOk(home.home, ['tunnel', 'route', 'dns', 'up', HOST]);
    await oxyOk(home.home, ['tunnel', 'route', 'dns', 'up', `relayed.${HOST}`]);
    await oxyOk(home.home, ['tunnel', 'create', 'older']);
    await oxyOk(home.home, ['tunnel', 'route', 'dns', 'older', `older.${HOST}`]);
    // relayed.*: httpHostHeader makes the rule go through undici (not spliced) on the stream.
    const config = join(home.home, 'up.yml');
    writeFileSync(
      config,
      `ingress:\n  - hostname: relayed.${HOST}\n    service: http://127.0.0.1:${origin.port}\n    originRequest:\n      httpHostHeader: ${HOST}\n  - service: http://127.0.0.1:${origin.port}\n`,
    );
    const e = await startEdge(home.home);
    procs.push(e.edge);
    edgePort = e.httpPort;
    procs.push((await startConnector(home.home, e.tunnelPort, ['--config', config, 'up'], 2, protocol)).connector);
    // A connector from before chunked bodies on http1 streams: it announces the streams only.
    const older = new OxyProcess(
      home.home,
      tunnelRunArgs(e.tunnelPort, protocol, ['--ha-connections', '1', '--url', `http://127.0.0.1:${origin.port}`, 'older']),
      { OXY_HTTP1_STREAMS: 'nochunked' },
    );
    procs.push(older);
    await older.waitFor(/Registered tunnel connection connIndex=0 /);
    quickHome = tempHome();
    const quick = new OxyProcess(quickHome.home, ['tunnel', '--url', `http://127.0.0.1:${origin.port}`, '--protocol', protocol]);
    procs.push(quick);
    quickPort = Number((await quick.waitFor(/^http:\/\/127\.0\.0\.1:(\d+)$/m, 30_000))[1]);
  });

  afterAll(async () => {
    await Promise.all(procs.map((p) => p.stop('SIGKILL')));
    origin.server.closeAllConnections();
    origin.server.close();
    home.cleanup();
    quickHome?.cleanup();
  });

  const setups: Setup[] = [
    { name: 'edge + connector', port: () => edgePort, relayedHost: `relayed.${HOST}` },
    { name: 'quick tunnel', port: () => quickPort },
  ];

  it.each(setups)(
    '$name: a 24 MiB body in 64 KiB chunks with trailers, byte-exact, then the next request on the same connection',
    async (s) => {
      const body = randomBytes(24 * 1024 * 1024);
      const c = new Client(s.port());
      await c.ready();
      await c.write(Buffer.concat([Buffer.from(head('/large')), chunked(body, [65536], 'X-Sum: 1\r\n')]), 1 << 20);
      await c.write(Buffer.from(`GET /after HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`));
      const [a, b] = await c.waitAnswers(2, 30_000);
      c.s.destroy();
      expect(a.status).toBe(200);
      // Trailers reach the origin: the bytes went through unchanged on the http1 stream.
      expect(JSON.parse(a.body)).toEqual({ path: '/large', te: 'chunked', bytes: body.length, sha: sha(body), trailers: { 'x-sum': '1' }, aborted: false });
      expect(JSON.parse(b.body)).toMatchObject({ path: '/after', te: '-', bytes: 0 });
    },
    60_000,
  );

  it.each(setups)('$name: many small chunks, read a few bytes at a time, and pipelined requests after it in one write', async (s) => {
    const body = randomBytes(40_000);
    const sizes = [1, 2, 3, 17, 100, 5, 255, 4096];
    const c = new Client(s.port());
    await c.ready();
    // The head comes whole (a head split across reads is Node's server's: slowloris), the body in pieces.
    await c.write(Buffer.from(head('/small')));
    await c.write(chunked(body, sizes, 'X-A: a\r\nX-B: b\r\n'), 7);
    // A chunked request with a request pipelined behind it, all in one write.
    const second = Buffer.concat([
      Buffer.from(head('/one-write')),
      chunked(Buffer.from('hello world'), [5]),
      Buffer.from(`GET /p HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`),
    ]);
    await c.write(second);
    const answers = await c.waitAnswers(3);
    c.s.destroy();
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
    expect(JSON.parse(answers[0].body)).toMatchObject({
      path: '/small',
      te: 'chunked',
      bytes: body.length,
      sha: sha(body),
      trailers: { 'x-a': 'a', 'x-b': 'b' },
    });
    expect(JSON.parse(answers[1].body)).toMatchObject({ path: '/one-write', bytes: 11, sha: sha(Buffer.from('hello world')) });
    expect(JSON.parse(answers[2].body)).toMatchObject({ path: '/p', bytes: 0 });
  });

  it.each(setups)('$name: Expect: 100-continue (as curl -T - sends it): 100 from the edge, then the body on the fast path', async (s) => {
    const body = randomBytes(300_000);
    const c = new Client(s.port());
    await c.ready();
    await c.write(Buffer.from(head('/expect', 'Expect: 100-continue\r\n')));
    await expect.poll(() => c.buf, { timeout: 5000 }).toBe('HTTP/1.1 100 Continue\r\n\r\n');
    await c.write(chunked(body, [16_384], 'X-T: 1\r\n'));
    const [, a] = await c.waitAnswers(2);
    c.s.destroy();
    expect(JSON.parse(a.body)).toMatchObject({ path: '/expect', bytes: body.length, sha: sha(body), trailers: { 'x-t': '1' } });
  });

  it.each(setups)('$name: a client that aborts mid-body: the origin sees the request cut, the next client is served', async (s) => {
    const c = new Client(s.port());
    await c.ready();
    await c.write(Buffer.concat([Buffer.from(head('/aborted')), Buffer.from('10000\r\n'), randomBytes(30_000)]));
    await new Promise((r) => setTimeout(r, 200));
    c.s.destroy();
    await expect.poll(() => origin.seen.find((x) => x.path === '/aborted'), { timeout: 10_000 }).toMatchObject({ aborted: true });
    const next = new Client(s.port());
    await next.ready();
    await next.write(Buffer.concat([Buffer.from(head('/next')), chunked(Buffer.from('ok'), [1])]));
    const [a] = await next.waitAnswers(1);
    next.s.destroy();
    expect(JSON.parse(a.body)).toMatchObject({ path: '/next', bytes: 2 });
  });

  it.each(setups)('$name: framing that turns odd mid-body is answered 400 and closed; nothing after it reaches the origin', async (s) => {
    for (const [what, odd] of [
      ['a quoted chunk extension', '5;x="y"\r\nhello\r\n0\r\n\r\n'],
      ['a bad size', 'zz\r\n'],
      ['a bare LF', '5\nhello\r\n0\r\n\r\n'],
      ['data past its size', '2\r\nhello\r\n0\r\n\r\n'],
      ['Content-Length in the trailers', '0\r\nContent-Length: 40\r\n\r\n'],
    ]) {
      const c = new Client(s.port());
      await c.ready();
      await c.write(Buffer.from(`${head(`/odd-${what.replace(/ /g, '-')}`)}3\r\nabc\r\n`));
      // The request is on its way (its first chunk went) before the odd bytes come.
      await new Promise((r) => setTimeout(r, 150));
      await c.write(Buffer.from(`${odd}GET /smuggled HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`));
      await expect.poll(() => c.closed, { timeout: 5000, message: what }).toBe(true);
      expect(c.buf, what).toBe('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    }
    await new Promise((r) => setTimeout(r, 300));
    expect(origin.seen.filter((x) => x.path.startsWith('/odd-') && !x.aborted)).toEqual([]);
    expect(origin.seen.filter((x) => x.path.includes('smuggled'))).toEqual([]);
  });

  it('a rule relayed through undici (not spliced) gets the body de-chunked, byte-exact', async () => {
    const body = randomBytes(3 * 1024 * 1024 + 7);
    const c = new Client(edgePort);
    await c.ready();
    const req = Buffer.concat([
      Buffer.from(`POST /relayed HTTP/1.1\r\nHost: relayed.${HOST}\r\nTransfer-Encoding: chunked\r\n\r\n`),
      chunked(body, [1000, 70_000, 3]),
      Buffer.from(`GET /relayed-after HTTP/1.1\r\nHost: relayed.${HOST}\r\n\r\n`),
    ]);
    await c.write(req, 50_000);
    const [a, b] = await c.waitAnswers(2, 30_000);
    c.s.destroy();
    // undici chunks it again as it likes; the origin reads the same bytes.
    expect(JSON.parse(a.body)).toMatchObject({ path: '/relayed', te: 'chunked', bytes: body.length, sha: sha(body) });
    expect(JSON.parse(b.body)).toMatchObject({ path: '/relayed-after', bytes: 0 });
  });

  it('a connector that does not take chunked bodies on http1 streams (an older peer) gets them per request, byte-exact', async () => {
    const body = randomBytes(200_000);
    const c = new Client(edgePort);
    await c.ready();
    await c.write(Buffer.concat([Buffer.from(head('/older').replace(HOST, `older.${HOST}`)), chunked(body, [4096], 'X-T: 1\r\n')]));
    const [a] = await c.waitAnswers(1);
    c.s.destroy();
    // The per-request path drops trailers (undici sends none): proof of the path it took.
    expect(JSON.parse(a.body)).toMatchObject({ path: '/older', bytes: body.length, sha: sha(body), trailers: {} });
  });
});
