// Issue 12 quality bar: hostile input to every HTTP listener of a real edge — the public
// listener (plain, and with --hooks), the CONNECT proxy and the metrics listener — while a good
// client keeps being served. Thousands of generated requests (fast-check, fixed seed: a failure
// reproduces) plus the classic request-smuggling set and slowloris connections. The test fails
// on a crash (a process exits or logs a bug), a hang (a connection the edge never closes after
// the client's FIN), a reply that is not HTTP, a smuggled request reaching the origin, or a
// wrong byte in the good client's answers.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { oxyOk, tempHome } from '../../helpers/cli.js';
import { OxyProcess, startConnector, startEdge } from '../../helpers/processes.js';

const HOST = 'app.example.com';
/** Generated cases per listener (a few thousand in all), and how many run at once. */
const CASES = { plain: 900, hooked: 600, proxy: 600, metrics: 400 };
const CONCURRENCY = 64;
/** The edges run with short client timeouts (edge.yml http-timeouts), so they close every connection soon. */
const TIMEOUTS = { 'headers-ms': 1000, 'request-ms': 2000, 'idle-ms': 2000, 'keep-alive-ms': 500 };
/** Every connection must be closed within this of its bytes (timeouts plus Node's check interval and a busy machine). */
const HANG_MS = 15_000;
/** Quiet this long after the last bytes from the edge, the client half-closes. */
const QUIET_MS = 150;

let home: { home: string; cleanup: () => void };
const procs: OxyProcess[] = [];
let origin: { server: Server; port: number; paths: string[] };
const ports = { plain: 0, hooked: 0, proxy: 0, metrics: 0 };

/** The origin: echoes POST bodies, answers `hello PATH` otherwise, and records every path it sees. */
async function startOrigin() {
  const paths: string[] = [];
  const server = createServer((req, res) => {
    paths.push(req.url ?? '');
    req.on('error', () => undefined);
    res.on('error', () => undefined);
    if (req.method === 'POST') {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      req.pipe(res);
    } else res.end(`hello ${req.url}`);
  });
  server.on('clientError', (_e, s) => s.destroy());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port, paths };
}

beforeAll(async () => {
  home = tempHome();
  origin = await startOrigin();
  await oxyOk(home.home, ['tunnel', 'create', 'web']);
  await oxyOk(home.home, ['tunnel', 'route', 'dns', 'web', HOST]);
  const hooks = join(home.home, 'hooks.js');
  writeFileSync(hooks, `export function start() { return { ingress: { handleConnection() {} }, http: { handleRequest() {}, handleResponse() {} } }; }\n`);
  const config = join(home.home, 'edge.yml');
  writeFileSync(
    config,
    `http-timeouts:\n${Object.entries(TIMEOUTS)
      .map(([k, v]) => `  ${k}: ${v}\n`)
      .join('')}`,
  );
  // One after the other: the first creates the edge identity both use.
  const plain = await startEdge(home.home, [
    '--config',
    config,
    '--location',
    'plain',
    '--proxy-listen',
    '127.0.0.1:0',
    '--proxy-allow',
    `127.0.0.1:${origin.port}`,
  ]);
  const hooked = await startEdge(home.home, ['--config', config, '--location', 'hooked', '--hooks', hooks]);
  procs.push(plain.edge, hooked.edge);
  const connectors = await Promise.all(
    [plain, hooked].map((e) => startConnector(home.home, e.tunnelPort, ['--url', `http://127.0.0.1:${origin.port}`, '--ha-connections', '1', 'web'], 1)),
  );
  procs.push(...connectors.map((c) => c.connector));
  ports.plain = plain.httpPort;
  ports.hooked = hooked.httpPort;
  ports.proxy = Number((await plain.edge.waitFor(/CONNECT proxy listener ready address=127\.0\.0\.1:(\d+)/))[1]);
  ports.metrics = Number((await plain.edge.waitFor(/Edge running metrics=127\.0\.0\.1:(\d+)/))[1]);
});

afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop('SIGKILL')));
  origin?.server.closeAllConnections();
  origin?.server.close();
  home?.cleanup();
});

/** Every process still runs and never logged a bug. */
function expectAlive(): void {
  for (const p of procs) {
    expect(p.child.exitCode, p.output.slice(-3000)).toBeNull();
    expect(p.output).not.toMatch(/FTL|Bug: |at .*\(node:/);
  }
}

/**
 * The good client: until stopped, POSTs random bodies through both public listeners (the echo
 * must match byte for byte), tunnels through the proxy, and reads /metrics. Resolves with the
 * number of rounds; rejects at the first wrong answer.
 */
function goodClient(): { stop(): Promise<number> } {
  let running = true;
  let rounds = 0;
  const loop = (async () => {
    while (running) {
      for (const port of [ports.plain, ports.hooked]) {
        const body = randomBytes(1 + Math.floor(Math.random() * 65536));
        const res = await request(`http://127.0.0.1:${port}/good`, {
          method: 'POST',
          body,
          headers: { host: HOST },
          headersTimeout: 20_000,
          bodyTimeout: 20_000,
        });
        const echo = Buffer.from(await res.body.arrayBuffer());
        if (res.statusCode !== 200 || !echo.equals(body))
          throw new Error(`good POST on ${port}: ${res.statusCode}, ${echo.length}/${body.length} bytes, equal=${echo.equals(body)}`);
        // And a chunked upload (a stream body: undici chunks it), which rides the http1 stream too.
        const parts = [randomBytes(1 + Math.floor(Math.random() * 20_000)), randomBytes(1 + Math.floor(Math.random() * 20_000))];
        const up = await request(`http://127.0.0.1:${port}/good-chunked`, {
          method: 'POST',
          body: Readable.from(parts),
          headers: { host: HOST },
          headersTimeout: 20_000,
          bodyTimeout: 20_000,
        });
        const upEcho = Buffer.from(await up.body.arrayBuffer());
        if (up.statusCode !== 200 || !upEcho.equals(Buffer.concat(parts)))
          throw new Error(`good chunked POST on ${port}: ${up.statusCode}, ${upEcho.length} bytes`);
      }
      const tunneled = await connectGet(ports.proxy, `127.0.0.1:${origin.port}`, '/good-connect');
      if (!tunneled.endsWith('hello /good-connect')) throw new Error(`good CONNECT: ${tunneled}`);
      const metrics = await request(`http://127.0.0.1:${ports.metrics}/metrics`, { headersTimeout: 20_000, bodyTimeout: 20_000 });
      const text = await metrics.body.text();
      if (metrics.statusCode !== 200 || !text.includes('oxy_edge_')) throw new Error(`good /metrics: ${metrics.statusCode}`);
      rounds++;
    }
    return rounds;
  })();
  return {
    stop: () => {
      running = false;
      return loop;
    },
  };
}

/** CONNECT through the proxy, then one GET inside the tunnel; resolves with everything read. */
function connectGet(proxyPort: number, authority: string, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(proxyPort, '127.0.0.1');
    let got = '';
    let sent = false;
    const timer = setTimeout(() => (s.destroy(), reject(new Error(`CONNECT hung: ${got}`))), 20_000);
    s.on('connect', () => s.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`));
    s.on('data', (d) => {
      got += d;
      if (!sent && got.includes('\r\n\r\n')) {
        sent = true;
        s.write(`GET ${path} HTTP/1.1\r\nHost: ${authority}\r\nConnection: close\r\n\r\n`);
      }
    });
    s.on('error', (err) => (clearTimeout(timer), reject(err)));
    s.on('close', () => (clearTimeout(timer), resolve(got)));
  });
}

/**
 * Sends `bytes` to the listener in one write and waits for the edge to close. Once an answer came
 * and nothing more for QUIET_MS, the client half-closes (Node aborts requests in flight on a
 * client's FIN, so never before an answer); a request the edge never answers (cut short, slow) is
 * the edge's to close by its timeouts. Resolves with what came back; rejects if the connection is
 * still open HANG_MS after the write.
 */
function exchange(port: number, bytes: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const got: Buffer[] = [];
    let quiet: NodeJS.Timeout | undefined;
    const hang = setTimeout(() => {
      s.destroy();
      reject(
        new Error(
          `hang: open ${HANG_MS} ms after ${JSON.stringify(bytes.toString('latin1').slice(0, 300))}; got ${JSON.stringify(Buffer.concat(got).toString('latin1').slice(0, 200))}`,
        ),
      );
    }, HANG_MS);
    s.on('connect', () => s.write(bytes));
    s.on('data', (d: Buffer) => {
      got.push(d);
      clearTimeout(quiet);
      quiet = setTimeout(() => s.end(), QUIET_MS);
    });
    s.on('error', () => undefined); // a reset is an answer too
    s.on('end', () => s.end()); // the edge closed its side: close ours
    s.on('close', () => {
      clearTimeout(quiet);
      clearTimeout(hang);
      resolve(Buffer.concat(got));
    });
  });
}

/** Runs `fn` over `items`, `limit` at a time; rejects with the first failure. */
async function pool<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < items.length) await fn(items[next++]);
    }),
  );
}

// ─── Generators ──────────────────────────────────────────────────────────────

const token = fc.stringMatching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,12}$/);
const junk = fc.string({ unit: 'binary', maxLength: 40 });
const eol = fc.constantFrom('\r\n', '\r\n', '\r\n', '\n', '\r', '\r\r\n');

const method = fc.oneof(fc.constantFrom('GET', 'POST', 'PUT', 'HEAD', 'OPTIONS', 'DELETE', 'PATCH', 'TRACE', 'CONNECT', 'PRI', 'get'), token, junk);
const target = (proxyPort: number) =>
  fc.oneof(
    fc.constantFrom(
      '/',
      '/x?y=1',
      '*',
      '/%00',
      '/../../etc/passwd',
      `http://${HOST}/abs`,
      `${HOST}:80`,
      `127.0.0.1:${proxyPort}`,
      `http://127.0.0.1:${proxyPort}/`,
      '[::1]:80',
      'a:99999',
      '',
    ),
    fc.webPath(),
    junk,
  );
const version = fc.constantFrom('HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/1.1x', 'HTTP/0.9', '');
const header = fc.oneof(
  fc.constantFrom<[string, string]>(
    ['Host', HOST],
    ['Host', HOST],
    ['Host', ''],
    ['Host', 'other.example.org'],
    ['Host', `${HOST}:99999`],
    ['Content-Length', '0'],
    ['Content-Length', '5'],
    ['Content-Length', '-1'],
    ['Content-Length', '99999999999999999999'],
    ['Content-Length', '5, 5'],
    ['Content-Length', 'abc'],
    ['Transfer-Encoding', 'chunked'],
    ['Transfer-Encoding', 'chunked, identity'],
    ['Transfer-Encoding', 'xchunked'],
    ['Transfer-Encoding', ' chunked'],
    ['Transfer-Encoding', 'gzip'],
    ['Connection', 'keep-alive'],
    ['Connection', 'close'],
    ['Connection', 'Upgrade'],
    ['Upgrade', 'websocket'],
    ['Upgrade', 'tcp'],
    ['Upgrade', 'h2c'],
    ['Expect', '100-continue'],
    ['X-Forwarded-For', '1.2.3.4'],
    ['Proxy-Authorization', 'Basic eDp5'],
    ['Oxy-Vnet', 'nope'],
    ['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ=='],
  ),
  fc.tuple(token, fc.string({ maxLength: 30 })),
  fc.tuple(junk, junk),
);
const chunkSize = fc.oneof(
  fc.nat({ max: 40 }).map((n) => n.toString(16)),
  fc.constantFrom('ZZ', '-1', 'fffffffffffffffffff', '0x5', '5 ', '5;ext=1', '', ' '),
);
const body = fc.oneof(
  fc.constant(''),
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc
    .array(fc.tuple(chunkSize, fc.string({ maxLength: 40 })), { maxLength: 4 })
    .map((chunks) => `${chunks.map(([size, data]) => `${size}\r\n${data}\r\n`).join('')}0\r\n\r\n`),
);
/** A well-formed request with random method, path, headers and a body framed by Content-Length or chunks. */
const validRequest = (proxyPort: number, absolute: boolean) =>
  fc
    .record({
      method: fc.constantFrom('GET', 'POST', 'PUT', 'HEAD', 'OPTIONS', 'DELETE', 'PATCH'),
      path: fc.webPath().map((p) => p || '/'),
      query: fc.option(fc.webQueryParameters(), { nil: undefined }),
      headers: fc.array(fc.tuple(token, fc.stringMatching(/^[\x21-\x7e]([\x20-\x7e]{0,30}[\x21-\x7e])?$/)), { maxLength: 6 }),
      body: fc.option(fc.string({ unit: 'binary', maxLength: 300 }), { nil: undefined }),
      chunked: fc.boolean(),
      close: fc.boolean(),
    })
    .map((r) => {
      const path = `${r.path}${r.query ? `?${r.query}` : ''}`;
      const lines = [`${r.method} ${absolute ? `http://127.0.0.1:${proxyPort}${path}` : path} HTTP/1.1`, `Host: ${absolute ? `127.0.0.1:${proxyPort}` : HOST}`];
      for (const [k, v] of r.headers) if (!/^(host|content-length|transfer-encoding|connection|upgrade|expect)$/i.test(k)) lines.push(`${k}: ${v}`);
      if (r.close) lines.push('Connection: close');
      let body = '';
      if (r.body !== undefined) {
        if (r.chunked) {
          lines.push('Transfer-Encoding: chunked');
          body = `${r.body.length ? `${r.body.length.toString(16)}\r\n${r.body}\r\n` : ''}0\r\n\r\n`;
        } else {
          lines.push(`Content-Length: ${Buffer.byteLength(r.body, 'latin1')}`);
          body = r.body;
        }
      }
      return `${lines.join('\r\n')}\r\n\r\n${body}`;
    });

/** A request made of hostile parts: odd methods, targets, versions, line ends, headers, chunks, obs-fold. */
const hostileRequest = (proxyPort: number) =>
  fc.record({ method, target: target(proxyPort), version, headers: fc.array(header, { maxLength: 8 }), eol, body, fold: fc.boolean() }).map((r) => {
    let text = `${r.method} ${r.target} ${r.version}${r.eol}`;
    for (const [k, v] of r.headers) text += `${k}: ${v}${r.eol}`;
    if (r.fold && r.headers.length) text += ` folded${r.eol}`; // obs-fold
    return `${text}${r.eol}${r.body}`;
  });

/** Byte-level damage to a good request: one byte changed, a header line injected, or a CRLF lost. */
const damaged = (proxyPort: number) =>
  fc
    .tuple(validRequest(proxyPort, false), fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('byte', 'inject', 'crlf'))
    .map(([text, at, byte, how]) => {
      const i = at % text.length;
      if (how === 'byte') return text.slice(0, i) + String.fromCharCode(byte) + text.slice(i + 1);
      if (how === 'crlf') return text.replace('\r\n', '\n');
      const eoh = text.indexOf('\r\n') + 2;
      return `${text.slice(0, eoh)}${String.fromCharCode(byte)}X-Inj: ${byte}\r\n${text.slice(eoh)}`;
    });

const oneRequest = (proxyPort: number, absolute: boolean) =>
  fc.oneof(
    { arbitrary: validRequest(proxyPort, absolute), weight: 4 },
    { arbitrary: damaged(proxyPort), weight: 3 },
    { arbitrary: hostileRequest(proxyPort), weight: 3 },
  );

/** `arb` one time in five, else undefined. */
const sometimes = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> =>
  fc.oneof({ arbitrary: fc.constant(undefined), weight: 4 }, { arbitrary: arb, weight: 1 });

/** One to three requests back to back, sometimes cut short, sometimes followed by random bytes. */
const payload = (proxyPort: number, absolute = false) =>
  fc
    .record({
      // A bad request pipelined behind a good one makes Node refuse the connection before the good
      // one is answered: single good requests keep the tunnel path busy too.
      requests: fc.oneof(
        { arbitrary: validRequest(proxyPort, absolute).map((r) => [r]), weight: 2 },
        { arbitrary: fc.array(oneRequest(proxyPort, absolute), { minLength: 1, maxLength: 3 }), weight: 3 },
      ),
      cut: sometimes(fc.nat()),
      tail: sometimes(fc.uint8Array({ maxLength: 64 })),
    })
    .map(({ requests, cut, tail }) => {
      let bytes = Buffer.from(requests.join(''), 'latin1');
      if (cut !== undefined) bytes = bytes.subarray(0, cut % (bytes.length + 1));
      return tail ? Buffer.concat([bytes, Buffer.from(tail)]) : bytes;
    });

/** A CONNECT authority or an absolute URL naming a host by name (the proxy would ask DNS). */
const NEEDS_DNS = /CONNECT[ \t]+[^\s]*[a-z]|http:\/\/[^\s/]*[a-z]/i;

/** Whatever came back is HTTP/1.x responses (or nothing: a close or a reset). */
function expectHttp(reply: Buffer, sent: Buffer): void {
  if (reply.length === 0) return;
  expect(reply.subarray(0, 9).toString('latin1'), `reply to ${JSON.stringify(sent.toString('latin1').slice(0, 200))}`).toMatch(/^HTTP\/1\.[01] /);
}

// ─── The classic request-smuggling set ───────────────────────────────────────

const H = `Host: ${HOST}\r\n`;
/** Each must be refused (status) without a second request reaching the origin. */
const SMUGGLING: [string, string, number][] = [
  ['CL.TE', `POST /a HTTP/1.1\r\n${H}Content-Length: 35\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nX: y`, 400],
  ['TE.CL', `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n2c\r\nGET /smuggled HTTP/1.1\r\n${H}\r\n\r\n0\r\n\r\n`, 400],
  ['TE.TE (obfuscated)', `POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n${H}\r\n`, 400],
  [
    'TE with a space before the colon',
    `POST /a HTTP/1.1\r\n${H}Transfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n${H}\r\n`,
    400,
  ],
  ['duplicate Content-Length', `POST /a HTTP/1.1\r\n${H}Content-Length: 0\r\nContent-Length: 40\r\n\r\nGET /smuggled HTTP/1.1\r\n${H}\r\n`, 400],
  ['Content-Length list', `POST /a HTTP/1.1\r\n${H}Content-Length: 0, 40\r\n\r\nGET /smuggled HTTP/1.1\r\n${H}\r\n`, 400],
  ['duplicate Host', `GET /smuggled HTTP/1.1\r\n${H}Host: other.example.org\r\n\r\n`, 400],
  ['obs-fold', `GET /smuggled HTTP/1.1\r\n${H}X-A: a\r\n Transfer-Encoding: chunked\r\n\r\n`, 400],
  ['obs-fold on Transfer-Encoding', `POST /smuggled HTTP/1.1\r\n${H}Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n`, 400],
  ['bad chunk size', `POST /smuggled HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nZZZZ\r\n`, 400],
  ['chunk size overflow', `POST /smuggled HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nab\r\n0\r\n\r\n`, 400],
  ['chunked not last', `POST /smuggled HTTP/1.1\r\n${H}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n`, 400],
  ['bare LF in chunks', `POST /smuggled HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n`, 400],
  ['NUL in the target', `GET /smuggled\0 HTTP/1.1\r\n${H}\r\n`, 400],
  ['huge headers', `GET /smuggled HTTP/1.1\r\n${H}X-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431],
];

describe('hostile input to the HTTP listeners, a good client served throughout', () => {
  it('the request-smuggling set is refused on every listener and nothing smuggled reaches the origin', async () => {
    const good = goodClient();
    try {
      for (const listener of ['plain', 'hooked', 'metrics', 'proxy'] as const) {
        for (const [name, text, status] of SMUGGLING) {
          const reply = (await exchange(ports[listener], Buffer.from(text, 'latin1'))).toString('latin1');
          // The proxy and metrics answer on their own; the status is the parser's either way.
          if (listener === 'plain' || listener === 'hooked') {
            expect(reply, `${listener}: ${name}`).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
            expect(reply.match(/HTTP\/1\.[01] \d{3}/g), `${listener}: ${name}`).toHaveLength(1);
          } else {
            // The proxy and metrics forward nothing of this: they may answer the request (a 400
            // "not a proxy request", a 404) before the parser refuses the rest; never a 2xx.
            const all = reply.match(/HTTP\/1\.[01] \d{3}/g) ?? [];
            expect(all.length, `${listener}: ${name}`).toBeGreaterThan(0);
            for (const line of all) expect(line, `${listener}: ${name}`).toMatch(/ 4\d\d$/);
          }
        }
      }
      expect(origin.paths.filter((p) => p.includes('smuggled'))).toEqual([]);
    } finally {
      expect(await good.stop()).toBeGreaterThan(0);
    }
    expectAlive();
  }, 50_000);

  it('chunk framing that turns odd after the request went on its way: refused and closed, nothing past it reaches the origin', async () => {
    // The fast path passes a chunked body on as it comes, so what follows a checked prefix is
    // judged mid-request: the edge must cut the request as Node's parser would, never pass it on.
    // (Each of these Node's parser refuses too, so the hooked listener's answers are the reference.)
    const breaks = [
      ['space before a chunk extension', '5 ;a=b\r\nhello\r\n0\r\n\r\n'],
      ['a bad chunk size', 'ZZZZ\r\n'],
      ['a size overflow', 'fffffffffffffffff1\r\nab\r\n0\r\n\r\n'],
      ['a bare LF', '3\nabc\n0\n\n'],
      ['data longer than its size', '2\r\nabcdef\r\n0\r\n\r\n'],
      ['obs-fold in the trailers', '0\r\nX-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n'],
      ['Content-Length in the trailers', '0\r\nContent-Length: 40\r\n\r\n'],
    ];
    const good = goodClient();
    try {
      for (const listener of ['plain', 'hooked'] as const) {
        for (const [name, odd] of breaks) {
          const reply = await new Promise<string>((resolve) => {
            const s = net.connect(ports[listener], '127.0.0.1');
            let got = '';
            s.setEncoding('latin1');
            s.on('data', (d: string) => (got += d));
            s.on('error', () => undefined);
            const hang = setTimeout(() => s.destroy(), HANG_MS);
            s.on('close', () => (clearTimeout(hang), resolve(got)));
            s.once('connect', () => {
              s.write(`POST /odd HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n`);
              setTimeout(() => s.write(`${odd}GET /smuggled HTTP/1.1\r\n${H}\r\n`), 100);
            });
          });
          // One answer at most: the 400 (none sent yet), or the start of the echo cut short.
          const statuses = reply.match(/HTTP\/1\.[01] \d{3}/g) ?? [];
          expect(statuses.length, `${listener}: ${name}: ${reply.slice(0, 200)}`).toBeLessThanOrEqual(1);
          for (const st of statuses) expect(st, `${listener}: ${name}`).toMatch(/ (200|400)$/);
        }
      }
      expect(origin.paths.filter((p) => p.includes('smuggled'))).toEqual([]);
    } finally {
      expect(await good.stop()).toBeGreaterThan(0);
    }
    expectAlive();
  }, 50_000);

  it('slowloris on every listener, on the head, on the body or inside a chunk, is closed by the edge within its timeouts', async () => {
    const started = Date.now();
    const closedAfter = await Promise.all(
      (['plain', 'hooked', 'proxy', 'metrics'] as const).flatMap((listener) =>
        ['head', 'body', 'chunked'].map(
          (what) =>
            new Promise<string>((resolve) => {
              const s = net.connect(ports[listener], '127.0.0.1');
              const drip = setInterval(() => s.writable && s.write('X'), 200);
              s.on('error', () => undefined);
              s.resume();
              s.once('connect', () =>
                s.write(
                  what === 'head'
                    ? `GET / HTTP/1.1\r\nHost: ${HOST}\r\nX-Slow: `
                    : what === 'body'
                      ? `POST / HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 100000\r\n\r\n`
                      : // A chunked body whose framing is fine, dripping data: the request timeout bounds it too.
                        `POST / HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\n\r\n100000\r\n`,
                ),
              );
              const give = setTimeout(() => s.destroy(), 6000);
              s.once('close', () => {
                clearInterval(drip);
                clearTimeout(give);
                resolve(`${listener} ${what} ${Date.now() - started < 5000 ? 'closed' : 'held'}`);
              });
            }),
        ),
      ),
    );
    expect(closedAfter.filter((r) => r.endsWith('held'))).toEqual([]);
  });

  it(`${Object.values(CASES).reduce((a, b) => a + b)} generated requests and 100 slowloris connections: no crash, no hang, only HTTP back`, async () => {
    const good = goodClient();
    const statuses: Record<string, number> = {};
    // Slowloris: connections that send a header byte now and then; they must not starve anyone.
    const slowNames = ['plain', 'hooked', 'proxy', 'metrics'] as const;
    const slow = Array.from({ length: 100 }, (_, i) => net.connect(ports[slowNames[i % 4]], '127.0.0.1'));
    let slowClosed = 0;
    const slowOpen = () =>
      slow
        .map((s, i) => (s.destroyed ? '' : `${slowNames[i % 4]}(${s.bytesWritten}B written, ${s.bytesRead}B read)`))
        .filter(Boolean)
        .slice(0, 8)
        .join(' ');
    const drip = setInterval(() => {
      for (const s of slow) if (!s.destroyed) s.write('X');
    }, 200);
    for (const s of slow) {
      s.on('error', () => undefined);
      s.resume(); // read what the edge sends, so its close is seen
      s.once('close', () => slowClosed++);
      s.once('connect', () => s.write(`GET / HTTP/1.1\r\nHost: ${HOST}\r\nX-Slow: `));
    }
    try {
      for (const [listener, count] of Object.entries(CASES) as [keyof typeof CASES, number][]) {
        // For the proxy, good requests are absolute-form ones (a GET through it to its own port: refused by policy).
        let cases = fc.sample(payload(ports.proxy, listener === 'proxy'), { numRuns: count, seed: 12 });
        // Test traffic stays on loopback: nothing the proxy would have to resolve through DNS.
        if (listener === 'proxy') cases = cases.filter((b) => !NEEDS_DNS.test(b.toString('latin1')));
        await pool(cases, CONCURRENCY, async (bytes) => {
          const reply = await exchange(ports[listener], bytes);
          expectHttp(reply, bytes);
          const status = reply.subarray(9, 12).toString() || 'closed';
          statuses[`${listener} ${status}`] = (statuses[`${listener} ${status}`] ?? 0) + 1;
        });
        expectAlive();
      }
      // The edge closes every slowloris connection itself (headers timeout, 1 s).
      await expect.poll(() => slowClosed, { timeout: 5000, message: `still open: ${slowOpen()}` }).toBe(slow.length);
    } finally {
      clearInterval(drip);
      for (const s of slow) s.destroy();
      console.log(`replies by listener and status: ${JSON.stringify(statuses)}; good client rounds: ${await good.stop()}`);
    }
    expectAlive();
  }, 55_000);
});
