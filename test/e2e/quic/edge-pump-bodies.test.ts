// The ngtcp2 edge reads request bodies natively (AnswerPump.readBody): after JS wrote a request's
// records, the rest of its body (Content-Length, or chunked with the framing checked by the addon
// as ChunkedBody checks it) goes from the client's socket to the stream as BODY records without JS.
// What clients and the origin see must not change: compared with OXY_EDGE_BODY=0 byte for byte.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { pick, rng, split } from '../../helpers/random.js';
import { getVia, sha256hex, whileServed } from './support.js';
import { BULK, edgePumpTunnel, get } from './edge-pump-support.js';

/** GETs answer `hello PATH`; bodies answer their length, sha-256 and trailers (once whole). */
const hashingOrigin = () =>
  createServer((req, res) => {
    req.on('error', () => undefined);
    res.on('error', () => undefined);
    if (req.method === 'GET') return void res.end(`hello ${req.url}`);
    const h = createHash('sha256');
    let n = 0;
    req.on('data', (c: Buffer) => {
      h.update(c);
      n += c.length;
    });
    req.on('end', () => res.end(`${n} ${h.digest('hex')} ${JSON.stringify(req.trailers)}`));
  });

const { tunnel } = edgePumpTunnel(hashingOrigin);

/** `data` as a chunked body in chunks of 1..max bytes (some with an extension), then the last chunk and `trailers`. */
function chunked(data: Buffer, seed: number, max: number, trailers = ''): Buffer {
  const r = rng(seed);
  const parts: Buffer[] = [];
  for (let i = 0; i < data.length; ) {
    const k = Math.min(data.length - i, 1 + Math.floor(r() * max));
    parts.push(Buffer.from(`${k.toString(16)}${r() < 0.1 ? ';x=1' : ''}\r\n`), data.subarray(i, i + k), Buffer.from('\r\n'));
    i += k;
  }
  parts.push(Buffer.from(`0\r\n${trailers}\r\n`));
  return Buffer.concat(parts);
}

/** `bytes` in pieces of 1..max bytes, by seed. */
const pieces = (bytes: Buffer, seed: number, max: number): Buffer[] => split(rng(seed), bytes, max);

/**
 * Writes `parts` on one connection, each once the one before left and a few ms passed (so the
 * edge has read what came before: its hand-over happens mid-body), then half-closes when asked;
 * resolves with every byte the client got once the edge closes (bounded).
 */
function send(port: number, parts: Buffer[], halfClose = false): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    const got: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no close in 60 s; got ${Buffer.concat(got).toString('latin1').slice(-300)}`));
    }, 60_000);
    s.on('data', (c: Buffer) => got.push(c));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(got).toString('latin1'));
    });
    let i = 0;
    const next = (): void => {
      if (s.destroyed) return;
      if (i === parts.length) return void (halfClose && s.end());
      s.write(parts[i++]!, () => setTimeout(next, i % 4 === 0 ? 5 : 0));
    };
    next();
  });
}

const post = (path: string, framing: string) => Buffer.from(`POST ${path} HTTP/1.1\r\nHost: app.example.com\r\n${framing}\r\n`);
const LAST = Buffer.from(get('/last', 'GET', 'Connection: close\r\n'));
const EXPECTED = `${BULK.length} ${sha256hex(BULK)}`;

/** Conversations of uploads, each ending with a closing GET. */
const CONVERSATIONS: Array<[string, Buffer[]]> = [
  // The first bytes with the head, the rest in one write with the next request right behind it.
  ['content-length', [Buffer.concat([post('/cl', `Content-Length: ${BULK.length}\r\n`), BULK.subarray(0, 1000)]), Buffer.concat([BULK.subarray(1000), LAST])]],
  // Chunks of up to 200 KB written in pieces cut anywhere (mid size line, mid CRLF), trailers.
  ['chunked', [post('/ch', 'Transfer-Encoding: chunked\r\n'), ...pieces(Buffer.concat([chunked(BULK, 7, 200_000, 'X-Sum: 1\r\n'), LAST]), 8, 300_000)]],
  // Two uploads on one kept connection, the second as curl sends one (Expect, small chunks).
  [
    'kept',
    [
      post('/a', `Content-Length: ${BULK.length}\r\n`),
      ...pieces(BULK, 9, 1_000_000),
      post('/b', 'Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n'),
      ...pieces(Buffer.concat([chunked(BULK, 10, 65_536), LAST]), 11, 65_536),
    ],
  ],
];

describe('the ngtcp2 edge reads request bodies natively', () => {
  it('Content-Length and chunked uploads, kept connections, the next request behind a body: byte-identical to JS reads, intact at the origin', async () => {
    const outputs: string[][] = [];
    for (const env of [{}, { OXY_EDGE_BODY: '0' }] as Record<string, string>[]) {
      const e = await tunnel(env);
      const out: string[] = [];
      for (const [, parts] of CONVERSATIONS) out.push(await send(e.httpPort, parts));
      outputs.push(out);
      if (!('OXY_EDGE_BODY' in env)) expect(e.edge.output).toMatch(/request body on stream \d+ read by the transport/);
      // (the client between requests may still be read natively: "client of stream N read by the transport")
      else expect(e.edge.output).not.toMatch(/request body on stream \d+ read by the transport/);
      expect(e.edge.child.exitCode).toBeNull();
      await Promise.all([e.edge.stop('SIGKILL'), e.connector.stop('SIGKILL')]);
    }
    const [native, js] = outputs.map((out) => out.map((text) => text.replace(/\r\ndate: [^\r]*/gi, '')));
    for (const [i, [name]] of CONVERSATIONS.entries()) expect(native![i], name).toBe(js![i]);
    expect(native![0]).toMatch(new RegExp(`^HTTP/1\\.1 200 OK\\r\\n[\\s\\S]*\\r\\n\\r\\n${EXPECTED} \\{\\}HTTP/1\\.1 200 OK[\\s\\S]*hello /last$`));
    expect(native![1]).toMatch(new RegExp(`\\r\\n\\r\\n${EXPECTED} \\{"x-sum":"1"\\}HTTP/1\\.1 200 OK[\\s\\S]*hello /last$`));
    expect(native![2]).toMatch(
      new RegExp(
        `\\r\\n\\r\\n${EXPECTED} \\{\\}HTTP/1\\.1 100 Continue\\r\\n\\r\\nHTTP/1\\.1 200 OK[\\s\\S]*\\r\\n\\r\\n${EXPECTED} \\{\\}HTTP/1\\.1 200 OK[\\s\\S]*hello /last$`,
      ),
    );
  }, 180_000);

  it('a body from curl -T - arrives whole', async () => {
    const e = await tunnel();
    const curl = spawn('curl', ['-sS', '-T', '-', '-H', 'Host: app.example.com', `http://127.0.0.1:${e.httpPort}/curl`], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    curl.stdout.on('data', (c: Buffer) => (out += c.toString()));
    curl.stdin.end(BULK);
    const code = await new Promise((resolve) => curl.on('exit', resolve));
    expect(code).toBe(0);
    expect(out).toBe(`${EXPECTED} {}`);
    expect(e.edge.output).toMatch(/request body on stream \d+ read by the transport/);
  }, 60_000);

  it('framing it does not take mid-body gets 400 and close, clients gone mid-body are dropped, while a good client is served', async () => {
    const e = await tunnel();
    const start = chunked(BULK.subarray(0, 2_000_000), 12, 100_000).subarray(0, -5); // without the last chunk
    const BAD = [
      'zz\r\n',
      '123456789\r\nab',
      '5\r\nhello\n',
      '5;a="b"\r\nhello\r\n',
      '0\r\nContent-Length: 5\r\n\r\n',
      '0\r\nX-A: \x01\r\n\r\n',
      '5\r\nhelloXY',
    ];
    const r = rng(13);
    const good = await whileServed(e.httpPort, async () => {
      for (const bad of BAD) {
        const got = await send(e.httpPort, [post('/bad', 'Transfer-Encoding: chunked\r\n'), ...pieces(start, 14, 200_000), Buffer.from(bad, 'latin1')]);
        expect(got, JSON.stringify(bad)).toBe('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      }
      for (let i = 0; i < 4; i++) {
        // Gone mid-body: a FIN (half-close) or a reset, after the edge's reads took the body over.
        const framing = pick(r, [`Content-Length: ${BULK.length}\r\n`, 'Transfer-Encoding: chunked\r\n']);
        const body = framing.startsWith('Content') ? BULK.subarray(0, 3_000_000) : start;
        if (i % 2 === 0) expect(await send(e.httpPort, [post('/gone', framing), ...pieces(body, 15 + i, 500_000)], true)).toBe('');
        else {
          const s = connect(e.httpPort, '127.0.0.1');
          s.on('error', () => undefined);
          s.write(post('/gone', framing));
          for (const p of pieces(body, 15 + i, 500_000)) await new Promise<void>((resolve) => s.write(p, () => resolve()));
          await new Promise((resolve) => setTimeout(resolve, 20));
          s.resetAndDestroy();
        }
      }
    });
    expect(good).toBeGreaterThan(0);
    expect(e.edge.child.exitCode).toBeNull();
    expect(e.edge.output).toMatch(/request body on stream \d+ read by the transport/);
    expect((await getVia(e.httpPort, '/after')).body.toString()).toBe('hello /after');
  }, 120_000);
});
