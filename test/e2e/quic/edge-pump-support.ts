// Shared by edge-pump.test.ts (the edge's answers written by the addon) and edge-pump-reads.test.ts
// (its HTTP/1 clients read by the addon between requests): one file each, so that they run in parallel.
import { randomBytes } from 'node:crypto';
import { createServer as createTcpServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll } from 'vitest';
import { freePort, OxyProcess, useWebTunnel } from '../../helpers/processes.js';
import { sha256hex } from './support.js';

export const BULK = randomBytes(24 * 1024 * 1024);
export const MIB = randomBytes(1024 * 1024);
export const HELD_MIB = 160;
/** Bytes /held's answer has handed to its socket so far (a live binding for the test files). */
export let heldWritten = 0;

/** How long the origin takes to answer /slow… (ms). */
export const SLOW_MS = 1500;

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
  // An answer that takes SLOW_MS: longer than the keep-alive timeout of the tests that ask for it.
  if (path.startsWith('/slow')) return void setTimeout(() => text('200 OK', `hello ${path}`), SLOW_MS);
  if (RAW[path]) {
    s.write(RAW[path]);
    return done();
  }
  text('200 OK', `hello ${path}`);
}

/** Per test file: the raw origin (or `makeOrigin`'s), and tunnel(), an edge (on ngtcp2, the default) and a connector (ngtcp2 too) with `edgeEnv` (and `edgeArgs`); one tunnel connection. */
export function edgePumpTunnel(makeOrigin: () => Server = rawOrigin) {
  const t = useWebTunnel();
  let origin: Server;
  let originUrl = '';
  beforeAll(async () => {
    origin = makeOrigin();
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
    originUrl = `http://127.0.0.1:${(origin.address() as AddressInfo).port}`;
  });
  afterAll(() => origin?.close());

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

  // The origin's URL is known once beforeAll ran.
  return { t, tunnel, originUrl: () => originUrl };
}

/** Writes `requests` on one connection and reads until the edge closes it (bounded). */
export function rawExchange(port: number, requests: string, halfClose = false): Promise<string> {
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

export const get = (path: string, method = 'GET', extra = ''): string => `${method} ${path} HTTP/1.1\r\nHost: app.example.com\r\n${extra}\r\n`;
/** Every framing in one pipelined write; the close-delimited answer last closes the connection. */
export const SCRIPT = ['/early', '/chunked', '/nocontent', '/status', '/k1'].map((p) => get(p)).join('') + get('/len', 'HEAD') + get('/close-delimited');

/**
 * A keep-alive conversation: each of `steps` written once the answer to the one before came
 * (so the edge's transport reads the client between them), then `last` (pipelined requests,
 * hostile bytes…); resolves with every byte the client got once the edge closes (bounded).
 */
export function converse(port: number, steps: string[], last: string | Buffer, halfClose = false): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let got = '';
    let step = 0;
    // Bounded: 60 s allows for a loaded machine (files run 3 at a time on 2 cores).
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no close in 60 s at step ${step} (then ${JSON.stringify(String(last).slice(0, 60))}); got ${got.slice(-500)}`));
    }, 60_000);
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

export const KEEP_STEPS = Array.from({ length: 6 }, (_, i) => get(`/k${i}`));
/** Raw request bytes after keep-alive requests the transport read, each a way back to JS (or to Node's server). */
export const AFTER_READS = [
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
