// An origin's answer with obs-fold (a header line that continues the one before: `X-A: 1\r\n
// Connection: close`) never reaches a client, on any path (RFC 9112 §5.2: a proxy refuses it or
// unfolds it). The edge's readers of answer heads — ResponseReader in JS (the fast path over HTTP/2,
// over quiche, over ngtcp2 with OXY_EDGE_PUMP=0) and its twin AnswerFramer in the addon (the ngtcp2
// edge's answer pump) — refuse it as an answer they cannot frame; nothing of it framed yet, the
// client gets the 502 page (error=http_protocol_error), then the close. The per-request path
// (OXY_HTTP1_STREAMS=0) has the connector's undici refuse it: the 502 page too, and the connection
// stays. Both readers once trimmed the line and took ` Connection: close` as a header of its own:
// the pump dropped it as hop-by-hop and sent `X-A: 1` on, keep-alive. A fold in a chunked answer's
// trailers comes after its head and body went: the answer is cut before them. A field name with
// whitespace before its colon (`Content-Length : 5`) and a value with a bare LF are refused the same way.
import { createServer, type AddressInfo, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startConnector, startEdge, useWebTunnel, type Protocol } from '../../helpers/processes.js';
import { converse, rawExchange } from '../quic/edge-pump-support.js';

const HOST = 'app.example.com';
const RAW: Record<string, string> = {
  '/fold': 'HTTP/1.1 200 OK\r\nX-A: 1\r\n Connection: close\r\nContent-Length: 5\r\n\r\nhello',
  '/fold-tab': 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: a\r\n\tb\r\n\r\nhello',
  '/fold-first': 'HTTP/1.1 200 OK\r\n X-A: 1\r\nContent-Length: 5\r\n\r\nhello',
  // Whitespace before the colon (RFC 9112 §5.1): refused the same way; it was read as Content-Length and sent on as it came.
  '/name-space': 'HTTP/1.1 200 OK\r\nContent-Length : 5\r\nX-A: 1\r\n\r\nhello',
  // A bare LF in a value (a lenient client ends the line there and reads Transfer-Encoding: chunked).
  '/value-lf': 'HTTP/1.1 200 OK\r\nX-A: a\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello',
  '/fold-trailer': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n X-U: 2\r\n\r\n',
};
const get = (path: string, extra = ''): string => `GET ${path} HTTP/1.1\r\nHost: ${HOST}\r\n${extra}\r\n`;

let origin: Server;
let originPort = 0;

describe('an answer with obs-fold', () => {
  const t = useWebTunnel();

  beforeAll(async () => {
    // Raw HTTP/1.1, keep-alive: one answer per request head.
    origin = createServer((s) => {
      s.on('error', () => undefined);
      let buf = '';
      s.on('data', (d: Buffer) => {
        buf += d.toString('latin1');
        for (let end = buf.indexOf('\r\n\r\n'); end >= 0; end = buf.indexOf('\r\n\r\n')) {
          const path = buf.slice(0, end).split(' ')[1] ?? '/';
          buf = buf.slice(end + 4);
          s.write(RAW[path] ?? `HTTP/1.1 200 OK\r\nContent-Length: ${6 + path.length}\r\n\r\nhello ${path}`);
        }
      });
    });
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
    originPort = (origin.address() as AddressInfo).port;
  });
  afterAll(() => origin?.close());

  it.each([
    ['http2', {}, 'closes'],
    ['quic', {}, 'closes'], // the addon's answer pump
    ['quic', { OXY_EDGE_PUMP: '0' }, 'closes'],
    ['quic', { OXY_QUIC_SERVER_IMPL: 'quiche' }, 'closes'],
    ['http2', { OXY_HTTP1_STREAMS: '0' }, 'stays'], // the per-request path
  ] as [Protocol, Record<string, string>, string][])(
    'over %s %j: the client gets the 502 page, never the fold; the connection %s',
    async (protocol, edgeEnv, after) => {
      const { edge, httpPort, tunnelPort } = await startEdge(t.home, [], {}, { NODE_DEBUG: 'oxy:edge:http1', ...edgeEnv });
      t.procs.push(edge);
      const { connector } = await startConnector(t.home, tunnelPort, ['--url', `http://127.0.0.1:${originPort}`, '--ha-connections', '1', 'web'], 1, protocol);
      t.procs.push(connector);
      // Served, and on the path meant.
      expect(await rawExchange(httpPort, get('/first', 'Connection: close\r\n'))).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nhello \/first$/);
      if (protocol === 'quic' && !('OXY_EDGE_PUMP' in edgeEnv) && !('OXY_QUIC_SERVER_IMPL' in edgeEnv))
        expect(edge.output).toMatch(/written to the client by the transport/);
      else expect(edge.output).not.toMatch(/written to the client by the transport/);
      for (const path of ['/fold', '/fold-tab', '/fold-first', '/name-space', '/value-lf']) {
        // A request after it on the same connection: answered only where the connection stays.
        const got = await rawExchange(httpPort, get(path) + get('/after', 'Connection: close\r\n'));
        expect(got, path).not.toMatch(/X-A|\r\n\r\nhello\r\n|\r\n\r\nhello$/);
        if (after === 'closes')
          expect(got, path).toMatch(
            /^HTTP\/1\.1 502 Bad Gateway\r\n[\s\S]*error=http_protocol_error\r\n[\s\S]*Connection: close\r\n\r\n[^\r]*cannot be forwarded\.\n$/,
          );
        else expect(got, path).toMatch(/^HTTP\/1\.1 502 Bad Gateway\r\n[\s\S]*not reachable right now\.\nHTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nhello \/after$/);
      }
      // The head and body went before the trailers: the answer is cut there, no trailer reaches the client.
      const cut = await rawExchange(httpPort, get('/fold-trailer') + get('/after', 'Connection: close\r\n'));
      expect(cut).toMatch(/^(HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\n5\r\nhello\r\n)?$/);
      expect(cut).not.toMatch(/X-T|X-U|\/after/);
      expect(await rawExchange(httpPort, get('/last', 'Connection: close\r\n'))).toMatch(/hello \/last$/);
      if (after === 'closes') expect(edge.output).toMatch(/obs-fold in a response/);
    },
    90_000,
  );

  it("over quic, a keep-alive request the edge's transport read itself gets the 502 page too (HEAD: without its body)", async () => {
    const { edge, httpPort, tunnelPort } = await startEdge(t.home, [], {}, { NODE_DEBUG: 'oxy:edge:http1' });
    t.procs.push(edge);
    const { connector } = await startConnector(t.home, tunnelPort, ['--url', `http://127.0.0.1:${originPort}`, '--ha-connections', '1', 'web'], 1, 'quic');
    t.procs.push(connector);
    const steps = ['/k0', '/k1', '/k2'].map((p) => get(p));
    for (const method of ['GET', 'HEAD']) {
      const got = await converse(httpPort, steps, `${method} /fold HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
      const page = got.slice(got.indexOf('hello /k2') + 'hello /k2'.length);
      expect(got).toMatch(/hello \/k0[\s\S]*hello \/k1[\s\S]*hello \/k2/);
      expect(page, method).toMatch(/^HTTP\/1\.1 502 Bad Gateway\r\n[\s\S]*error=http_protocol_error\r\n[\s\S]*Connection: close\r\n\r\n/);
      if (method === 'GET') expect(page).toMatch(/cannot be forwarded\.\n$/);
      else expect(page).toMatch(/\r\n\r\n$/);
      expect(page).not.toMatch(/X-A/);
    }
    // The requests after the first were the transport's to read.
    expect(edge.output).toMatch(/client of stream \d+ read by the transport/);
  }, 90_000);
});
