// The edge's answers written to its HTTP/1 client by the addon (the ngtcp2 edge's answer pump,
// cpp/quic-answer.cc: the connector's bytes never reach the edge's JS). Processes and real
// sockets, against an origin that writes raw HTTP/1: every framing (length, chunked with
// trailers, close-delimited, HEAD, 204, 1xx) byte-identical to the JS path (OXY_EDGE_PUMP=0)
// for pipelined requests on one connection; curl, 300 concurrent requests, bulk both ways; a
// client that stops reading (the origin is held, then every byte arrives); a half-closed client;
// an answer cut mid-way, a request dropped (502 page); answers the edge refuses (garbage, bytes
// past the end) while a good client is served; the request counter by status.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer as createTcpServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { promisify } from 'node:util';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { holdThenRead } from '../../helpers/origins.js';
import { OxyProcess, useWebTunnel } from '../../helpers/processes.js';
import { api, newToken } from '../dashboard/support.js';
import { expectServes, getVia, sha256hex, whileServed } from './support.js';

const t = useWebTunnel();
const BULK = randomBytes(24 * 1024 * 1024);
const MIB = randomBytes(1024 * 1024);
const HELD_MIB = 160;
let heldWritten = 0;

/** Raw answers by path (the origin writes them as they are). */
const RAW: Record<string, string> = {
  '/early':
    'HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=99\r\nConnection: keep-alive\r\n\r\nok',
  '/chunked': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nProxy-Connection: x\r\n\r\n5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n',
  '/len': 'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n', // HEAD only
  '/nocontent': 'HTTP/1.1 204 No Content\r\nX-A:  spaced \r\n\r\n',
  '/status': 'HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope',
  '/close-delimited': 'HTTP/1.1 200 OK\r\nServer: raw\r\n\r\nuntil the end',
  '/garbage': 'NOT HTTP AT ALL\r\n\r\n',
  '/extra': 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA BYTES',
};

/** A keep-alive origin speaking raw HTTP/1.1 (requests with Content-Length bodies), one request at a time. */
function rawOrigin(): Server {
  return createTcpServer((s) => {
    s.on('error', () => undefined);
    let buf: Buffer = Buffer.alloc(0);
    /** The request whose body is being read: its head, and the body's pieces. */
    let req: { method: string; path: string; left: number; body: Buffer[] } | undefined;
    let busy = false;
    const next = (): void => {
      while (!busy) {
        if (!req) {
          const end = buf.indexOf('\r\n\r\n');
          if (end < 0) return;
          const head = buf.toString('latin1', 0, end);
          const [method, path] = head.split(' ');
          req = { method: method!, path: path!, left: Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0), body: [] };
          buf = buf.subarray(end + 4);
        }
        const n = Math.min(req.left, buf.length);
        if (n > 0) req.body.push(buf.subarray(0, n));
        req.left -= n;
        buf = buf.subarray(n);
        if (req.left > 0) return;
        const r = req;
        req = undefined;
        busy = true;
        answer(s, r.method, r.path, Buffer.concat(r.body), () => {
          busy = false;
          setImmediate(next);
        });
      }
    };
    s.on('data', (c: Buffer) => {
      buf = buf.length === 0 ? c : Buffer.concat([buf, c]);
      next();
    });
  });
}

function answer(s: Socket, method: string, path: string, body: Buffer, done: () => void): void {
  const text = (status: string, b: string | Buffer): void => {
    s.write(`HTTP/1.1 ${status}\r\nContent-Length: ${b.length}\r\n\r\n`);
    s.write(b, () => done());
  };
  if (method === 'POST') return text('200 OK', `${body.length} ${sha256hex(body)}`);
  if (path === '/bulk') return text('200 OK', BULK);
  if (path === '/close-delimited' || path === '/garbage' || path === '/extra') return void s.end(RAW[path]);
  if (path === '/cut') {
    s.write('HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n');
    return void s.write(Buffer.alloc(100_000, 0x61), () => s.destroy());
  }
  if (path === '/drop') return void s.destroy();
  if (path === '/held') {
    heldWritten = 0;
    s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${HELD_MIB * MIB.length}\r\n\r\n`);
    let left = HELD_MIB;
    const more = (): void => {
      while (left > 0) {
        left--;
        heldWritten += MIB.length;
        if (!s.write(MIB)) return void s.once('drain', more);
      }
      done();
    };
    return more();
  }
  if (RAW[path]) {
    s.write(RAW[path]);
    return done();
  }
  text('200 OK', `hello ${path}`);
}

let origin: Server;
let originUrl = '';
beforeAll(async () => {
  origin = rawOrigin();
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
  originUrl = `http://127.0.0.1:${(origin.address() as AddressInfo).port}`;
});
afterAll(() => origin?.close());

async function freePort(): Promise<number> {
  const s = createTcpServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** An edge (on ngtcp2, the default) and a connector (ngtcp2 too) with `edgeEnv` (and `edgeArgs`); one tunnel connection. */
async function tunnel(edgeEnv: Record<string, string> = {}, edgeArgs: string[] = []) {
  const metrics = await freePort();
  const edge = new OxyProcess(
    t.home,
    ['edge', 'run', '--tunnel-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--metrics', `127.0.0.1:${metrics}`, ...edgeArgs],
    {
      NODE_DEBUG: 'oxy:edge:http1',
      ...edgeEnv,
    },
  );
  t.procs.push(edge);
  const tunnelPort = Number((await edge.waitFor(/Tunnel listener ready protocol=quic address=127\.0\.0\.1:(\d+)/))[1]);
  const httpPort = Number((await edge.waitFor(/Public HTTP listener ready address=127\.0\.0\.1:(\d+)/))[1]);
  const connector = new OxyProcess(t.home, [
    'tunnel',
    'run',
    '--edge',
    `127.0.0.1:${tunnelPort}`,
    '--protocol',
    'quic',
    '--ha-connections',
    '1',
    '--url',
    originUrl,
    'web',
  ]);
  t.procs.push(connector);
  await connector.waitFor(/Registered tunnel connection connIndex=0 [^\n]*protocol=quic/);
  return { edge, connector, httpPort, metrics, tunnelPort };
}

/** Writes `requests` on one connection and reads until the edge closes it (bounded). */
function rawExchange(port: number, requests: string, halfClose = false): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    const got: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no close in 20 s; got ${Buffer.concat(got).toString('latin1')}`));
    }, 20_000);
    s.on('data', (c: Buffer) => got.push(c));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(got).toString('latin1'));
    });
    s.write(requests);
    if (halfClose) s.end();
  });
}

const get = (path: string, method = 'GET', extra = ''): string => `${method} ${path} HTTP/1.1\r\nHost: app.example.com\r\n${extra}\r\n`;
/** Every framing in one pipelined write; the close-delimited answer last closes the connection. */
const SCRIPT = ['/early', '/chunked', '/nocontent', '/status', '/k1'].map((p) => get(p)).join('') + get('/len', 'HEAD') + get('/close-delimited');

describe('the ngtcp2 edge writes its HTTP/1 answers natively', () => {
  it('answers every framing byte-identical to the JS path, pipelined on one connection', async () => {
    const outputs: string[] = [];
    for (const env of [{}, { OXY_EDGE_PUMP: '0' }] as Record<string, string>[]) {
      const e = await tunnel(env);
      outputs.push(await rawExchange(e.httpPort, SCRIPT));
      if (!('OXY_EDGE_PUMP' in env)) expect(e.edge.output).toMatch(/answers of stream \d+ written to the client by the transport/);
      else expect(e.edge.output).not.toMatch(/written to the client by the transport/);
      await Promise.all([e.edge.stop('SIGKILL'), e.connector.stop('SIGKILL')]);
    }
    const [pumped, js] = outputs;
    expect(pumped).toBe(js);
    const keep = 'Connection: keep-alive\r\nKeep-Alive: timeout=75\r\n';
    expect(pumped).toBe(
      'HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n' +
        `HTTP/1.1 200 OK\r\nContent-Length: 2\r\n${keep}\r\nok` +
        `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n${keep}\r\n5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n` +
        `HTTP/1.1 204 No Content\r\nX-A:  spaced \r\n${keep}\r\n` +
        `HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n${keep}\r\nnope` +
        `HTTP/1.1 200 OK\r\nContent-Length: 9\r\n${keep}\r\nhello /k1` +
        `HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n${keep}\r\n` +
        'HTTP/1.1 200 OK\r\nServer: raw\r\nConnection: close\r\n\r\nuntil the end',
    );
  }, 90_000);

  it('serves curl, 300 concurrent requests and bulk both ways; counts each answer by status', async () => {
    const e = await tunnel();
    await expectServes(e.httpPort, BULK);
    for (let i = 0; i < 3; i++) expect((await getVia(e.httpPort, '/status')).status).toBe(404);
    // A half-closed client gets its answer whole, then the close.
    expect(await rawExchange(e.httpPort, get('/half'), true)).toMatch(/\r\n\r\nhello \/half$/);
    const scrape = () => request(`http://127.0.0.1:${e.metrics}/metrics`).then((r) => r.body.text());
    // The count of an idle keep-alive client's last answer comes with the pump's lazy record (≤ 20 ms).
    await expect.poll(async () => /^oxy_edge_http_requests_total\{status="404"\} (\d+)$/m.exec(await scrape())?.[1], { timeout: 5000 }).toBe('3');
    expect(e.edge.output).toMatch(/written to the client by the transport/);
  }, 90_000);

  it('a client that stops reading holds the origin back, then gets every byte', async () => {
    const e = await tunnel();
    const client = connect(e.httpPort, '127.0.0.1');
    client.on('error', () => undefined);
    client.write(get('/held'));
    // Held: the origin's writes stop growing while nobody reads (windows and buffers fill), then every byte arrives.
    const answer = await holdThenRead(client, () => heldWritten, HELD_MIB * MIB.length);
    client.destroy();
    expect(answer.held).toBe(true);
    expect(answer.heldAt).toBeLessThan(HELD_MIB * MIB.length);
    expect(answer.head).toMatch(/^HTTP\/1\.1 200 OK\r\nContent-Length: 167772160\r\nConnection: keep-alive\r\n/);
    expect(answer.bytes).toBe(HELD_MIB * MIB.length);
    const expected = createHash('sha256');
    for (let i = 0; i < HELD_MIB; i++) expected.update(MIB);
    expect(answer.sha256).toBe(expected.digest('hex'));
    // A client that resets mid-answer: its stream goes quietly, the next client is served.
    const rude = connect(e.httpPort, '127.0.0.1');
    rude.on('error', () => undefined);
    rude.write(get('/held'));
    await new Promise<void>((resolve) => {
      let n = 0;
      rude.on('data', (c: Buffer) => {
        n += c.length;
        if (n > 4 * MIB.length) {
          rude.resetAndDestroy();
          resolve();
        }
      });
    });
    expect((await getVia(e.httpPort, '/after-reset')).body.toString()).toBe('hello /after-reset');
    expect(e.edge.output).not.toMatch(/Request through the tunnel failed/);
  }, 90_000);

  it('an answer cut mid-way is cut for the client, a dropped request gets the 502 page, and the next request is served', async () => {
    const e = await tunnel();
    for (let i = 0; i < 3; i++) {
      const cut = await rawExchange(e.httpPort, get('/cut'));
      expect(cut).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
      expect(cut.length).toBeLessThan(1_000_000);
      expect((await getVia(e.httpPort, '/after')).body.toString()).toBe('hello /after');
    }
    const dropped = await getVia(e.httpPort, '/drop');
    expect(dropped.status).toBe(502);
    expect((await getVia(e.httpPort, '/after-drop')).body.toString()).toBe('hello /after-drop');
  }, 60_000);

  it('answers it cannot frame close that client only, while a good client keeps being served', async () => {
    const e = await tunnel();
    await whileServed(e.httpPort, async () => {
      for (let i = 0; i < 10; i++) {
        // Garbage instead of a status line: nothing of it reaches the client.
        expect(await rawExchange(e.httpPort, get('/garbage'))).toBe('');
        // Bytes past the end of an answer: the answer may arrive, then the connection goes.
        expect(await rawExchange(e.httpPort, get('/extra') + get('/never'))).not.toMatch(/never/);
      }
    });
    expect(e.edge.child.exitCode).toBeNull();
    expect(e.edge.output).toMatch(/Request through the tunnel failed/);
  }, 60_000);
});

/**
 * A keep-alive conversation: each of `steps` written once the answer to the one before came
 * (so the edge's transport reads the client between them), then `last` (pipelined requests,
 * hostile bytes…); resolves with every byte the client got once the edge closes (bounded).
 */
function converse(port: number, steps: string[], last: string | Buffer, halfClose = false): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let got = '';
    let step = 0;
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no close in 20 s at step ${step}; got ${got.slice(-500)}`));
    }, 20_000);
    const next = (): void => {
      if (step < steps.length) s.write(steps[step]!);
      else {
        s.write(last);
        if (halfClose) s.end();
      }
    };
    s.on('data', (c: Buffer) => {
      got += c.toString('latin1');
      if (step < steps.length && got.endsWith(`hello ${/ (\S+) /.exec(steps[step]!)![1]}`)) {
        step++;
        next();
      }
    });
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
    next();
  });
}

const KEEP_STEPS = Array.from({ length: 6 }, (_, i) => get(`/k${i}`));
/** Raw request bytes after keep-alive requests the transport read, each a way back to JS (or to Node's server). */
const AFTER_READS = [
  SCRIPT, // pipelined: every framing, the close-delimited one last
  get('/c', 'GET', 'Connection: close\r\n'),
  get('/x', 'POST', 'Content-Length: 5\r\n') + 'hello' + get('/close-delimited'),
  get('/e', 'POST', 'Expect: 100-continue\r\nContent-Length: 2\r\n') + 'ok' + get('/close-delimited'),
  get('/u', 'GET', 'Connection: Upgrade\r\nUpgrade: websocket\r\n'),
  'GET /other HTTP/1.1\r\nHost: nobody.example.com\r\n\r\n' + get('/end', 'GET', 'Connection: close\r\n'),
  `GET /big HTTP/1.1\r\nHost: app.example.com\r\nX-Big: ${'b'.repeat(20_000)}\r\n\r\n`,
  '\x00\x01\x02 NOT HTTP\r\n\r\n',
  'GET /split HTTP/1.1\r\nHo',
  get('/half'),
];

describe('the ngtcp2 edge reads its HTTP/1 clients natively between requests', () => {
  it('answers keep-alive requests it read itself, then pipelined, bodied, closing and hostile ones, byte-identical to JS reads', async () => {
    const outputs: string[][] = [];
    for (const env of [{}, { OXY_EDGE_READS: '0' }] as Record<string, string>[]) {
      const e = await tunnel(env);
      const out: string[] = [];
      for (const last of AFTER_READS) out.push(await converse(e.httpPort, KEEP_STEPS, last, last.endsWith('Ho') || last === get('/half')));
      outputs.push(out);
      if (!('OXY_EDGE_READS' in env)) expect(e.edge.output).toMatch(/client of stream \d+ read by the transport/);
      else expect(e.edge.output).not.toMatch(/read by the transport/);
      expect(e.edge.child.exitCode).toBeNull();
      await Promise.all([e.edge.stop('SIGKILL'), e.connector.stop('SIGKILL')]);
    }
    // Node's server's pages carry the time.
    const [native, js] = outputs.map((out) => out.map((text) => text.replace(/\r\ndate: [^\r]*/gi, '')));
    for (const [i, last] of AFTER_READS.entries()) expect(native![i], JSON.stringify(last.slice(0, 80))).toBe(js![i]);
    // The keep-alive answers, then the pipelined ones, whole.
    expect(native![0]).toMatch(/hello \/k5HTTP\/1\.1 103 Early Hints[\s\S]*until the end$/);
    expect(native![9]).toMatch(/hello \/k5HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nhello \/half$/);
  }, 120_000);

  it('takes a body larger than the socket buffers, a client gone mid-request and one gone mid-head, while a good client is served; counts every answer', async () => {
    const e = await tunnel();
    const good = await whileServed(e.httpPort, async () => {
      // An upload on a connection the transport read: its body goes through JS, every byte.
      const head = `POST /up HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: ${BULK.length}\r\nConnection: close\r\n\r\n`;
      const upload = await converse(e.httpPort, KEEP_STEPS, Buffer.concat([Buffer.from(head), BULK]));
      expect(upload).toMatch(new RegExp(`\\r\\n\\r\\n${BULK.length} ${sha256hex(BULK)}$`));
      for (let i = 0; i < 5; i++) {
        // Gone mid-body and mid-head, after requests the transport read.
        for (const cut of [get('/gone', 'POST', 'Content-Length: 100000\r\n') + 'partial', 'GET /gone HTTP/1.1\r\nHost: app.exa']) {
          const s = connect(e.httpPort, '127.0.0.1');
          s.on('error', () => undefined);
          await new Promise<void>((resolve) => {
            let step = 0;
            let got = '';
            s.on('data', (c: Buffer) => {
              got += c.toString('latin1');
              if (got.endsWith(`hello /k${step}`) && ++step < 3) s.write(get(`/k${step}`));
              else if (step === 3) {
                s.write(cut);
                setTimeout(() => (s.resetAndDestroy(), resolve()), 20);
              }
            });
            s.write(get('/k0'));
          });
        }
      }
    });
    expect(e.edge.child.exitCode).toBeNull();
    expect((await getVia(e.httpPort, '/after')).body.toString()).toBe('hello /after');
    // Every answer counted, whoever read its request: 6 keep-alive + the upload, 3 per cut client, the good client's, /after.
    const scrape = () => request(`http://127.0.0.1:${e.metrics}/metrics`).then((r) => r.body.text());
    await expect
      .poll(async () => Number(/^oxy_edge_http_requests_total\{status="200"\} (\d+)$/m.exec(await scrape())?.[1]), { timeout: 5000 })
      .toBe(7 + 30 + good + 1);
  }, 120_000);

  it('a request it read for a connector that died is sent again on the replacement (JS takes over its liveness watch)', async () => {
    const e = await tunnel();
    const s = connect(e.httpPort, '127.0.0.1');
    s.on('error', () => undefined);
    let got = '';
    s.on('data', (c: Buffer) => (got += c.toString('latin1')));
    for (let i = 0; i < 3; i++) {
      s.write(get(`/k${i}`));
      await expect.poll(() => got.endsWith(`hello /k${i}`), { timeout: 5000 }).toBe(true);
    }
    expect(e.edge.output).toMatch(/client of stream \d+ read by the transport/);
    await e.connector.stop('SIGKILL');
    const sentAt = Date.now();
    s.write(get('/after-kill'));
    const replacement = new OxyProcess(t.home, ['tunnel', 'run', '--edge', `127.0.0.1:${e.tunnelPort}`, '--protocol', 'quic', '--url', originUrl, 'web']);
    t.procs.push(replacement);
    await expect.poll(() => got.endsWith('hello /after-kill'), { timeout: 15_000 }).toBe(true);
    expect(Date.now() - sentAt).toBeLessThan(10_000);
    expect(e.edge.output).toMatch(/Resending an idempotent request: its tunnel connection stopped answering host=app\.example\.com method=GET /);
    s.destroy();
  }, 60_000);

  it("counts every answer to a request it read, several per record, in the request counter and the dashboard's traffic", async () => {
    const token = await newToken(t.home);
    const e = await tunnel({}, ['--dashboard-listen', '127.0.0.1:0']);
    const base = (await e.edge.waitFor(/Dashboard ready .*url=(http:\/\/127\.0\.0\.1:\d+)\//))[1];
    // curl: 4 clients, 100 keep-alive requests each, one after the other: most read by the addon, several answered within a batch.
    const run = promisify(execFile);
    const outs = await Promise.all(
      [0, 1, 2, 3].map((c) => run('curl', ['-sS', '-H', 'Host: app.example.com', `http://127.0.0.1:${e.httpPort}/c${c}-[1-100]`])),
    );
    for (const [c, { stdout }] of outs.entries()) expect(stdout).toBe(Array.from({ length: 100 }, (_, i) => `hello /c${c}-${i + 1}`).join(''));
    expect(e.edge.output).toMatch(/client of stream \d+ read by the transport/);
    const scrape = () => request(`http://127.0.0.1:${e.metrics}/metrics`).then((r) => r.body.text());
    await expect.poll(async () => Number(/^oxy_edge_http_requests_total\{status="200"\} (\d+)$/m.exec(await scrape())?.[1]), { timeout: 5000 }).toBe(400);
    const traffic = async () =>
      (await api(base, 'GET', '/api/v1/traffic', { bearer: token })).body.hostnames.find((h: { hostname: string }) => h.hostname === 'app.example.com')
        ?.requests_total;
    await expect.poll(traffic, { timeout: 5000 }).toBe(400);
  }, 60_000);

  it('keeps the keep-alive timeout: a client whose requests the addon reads stays past it, an idle one is closed after it', async () => {
    const config = join(t.home, 'edge-keepalive.yml');
    writeFileSync(config, 'http-timeouts:\n  keep-alive-ms: 1000\n');
    const e = await tunnel({}, ['--config', config]);
    const s = connect(e.httpPort, '127.0.0.1');
    s.on('error', () => undefined);
    let got = '';
    let closedAt = 0;
    s.on('data', (c: Buffer) => (got += c.toString('latin1')));
    s.on('close', () => (closedAt = Date.now()));
    // 3 s of requests 300 ms apart: three times the keep-alive timeout, none of it idle that long.
    for (let i = 0; i < 10; i++) {
      s.write(get(`/ka${i}`));
      await expect.poll(() => got.endsWith(`hello /ka${i}`), { timeout: 5000 }).toBe(true);
      await new Promise((r) => setTimeout(r, 300));
    }
    expect(closedAt).toBe(0);
    expect(got).toMatch(/Keep-Alive: timeout=1\r\n/);
    expect(e.edge.output).toMatch(/client of stream \d+ read by the transport/);
    // Then idle: closed about a second after the last answer (Node checks its timers coarsely).
    const lastAt = Date.now() - 300;
    await expect.poll(() => closedAt, { timeout: 10_000 }).toBeGreaterThan(0);
    expect(closedAt - lastAt).toBeGreaterThanOrEqual(900);
    expect(closedAt - lastAt).toBeLessThan(5000);
  }, 60_000);
});
