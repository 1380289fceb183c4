// The edge's own refusals while the client is still sending — a chunked body whose framing turns
// odd (400), a body slower than the request timeout (408), a head too large (431) or not HTTP
// (400) on Node's server, an upload's 404 (a hostname no tunnel serves) that closes after it, a
// CONNECT the proxy refuses (400) — close the connection as its
// forwarded answers do (util/linger.ts): the FIN follows the answer, and what the client still
// sends is read and dropped until its FIN. Closed at once, as they were, the unread bytes reset
// the connection and a client that writes before it reads loses the answer (see
// answer-before-body.test.ts, the same for the connector's answers). The client here reads
// nothing until the answer is in its receive queue and it has sent 8 MiB more. Bounded: a client
// that never ends is let go after 5 s, one that sends forever after 64 MiB.
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSockets, startConnector, startEdge, useWebTunnel, type Protocol } from '../../helpers/processes.js';
import { until } from '../../helpers/until.js';
import { sendBeforeReading, write } from './send-before-reading.js';

const HOST = 'app.example.com';
const MIB = 1024 * 1024;
const _REST = 8 * MIB;
/** The edge's request timeout (edge.yml): a body slower than this is answered 408. */
const REQUEST_MS = 1500;

let origin: Server;
let originPort = 0;
/** Paths the origin was asked for, and those whose request was aborted. */
const seen: string[] = [];
const aborted: string[] = [];

/** A head larger than Node's parser takes (16 KiB), not whole in the fast path's read: Node's server answers it. */
const BIG_HEAD = `GET / HTTP/1.1\r\nHost: ${HOST}\r\nX-Big: ${'a'.repeat(64 * 1024)}`;
/** A chunked upload whose first chunk goes to the origin, then framing no parser takes. */
const CHUNKED_HEAD = `POST /upload HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\n\r\n10000\r\n${'a'.repeat(0x10000)}\r\n`;

describe("the edge's refusals while the client still sends", () => {
  const t = useWebTunnel();

  beforeAll(async () => {
    origin = createServer((req, res) => {
      seen.push(req.url ?? '');
      req.on('error', () => undefined);
      res.on('error', () => undefined);
      // Answers once the whole body is in (these bodies never end).
      req.resume();
      req.on('end', () => res.end(`hello ${req.url}`));
      req.on('close', () => req.complete || aborted.push(req.url ?? ''));
    });
    origin.keepAliveTimeout = 120_000;
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
    originPort = (origin.address() as AddressInfo).port;
  });
  afterAll(() => origin?.close());

  const tunnel = async (protocol: Protocol, edgeEnv: Record<string, string> = {}, extra: string[] = []) => {
    const config = join(t.home, 'edge.yml');
    writeFileSync(config, `http-timeouts:\n  headers-ms: 1000\n  request-ms: ${REQUEST_MS}\n`);
    const e = await startEdge(t.home, ['--config', config, ...extra], {}, edgeEnv);
    t.procs.push(e.edge);
    const { connector } = await startConnector(t.home, e.tunnelPort, ['--url', `http://127.0.0.1:${originPort}`, '--ha-connections', '1', 'web'], 1, protocol);
    t.procs.push(connector);
    seen.length = 0;
    aborted.length = 0;
    return e;
  };

  // The fast path over both transports, and Node's server (the per-request path).
  const PATHS = [
    ['http2', {}],
    ['quic', {}],
    ['http2', { OXY_HTTP1_STREAMS: '0' }],
  ] as [Protocol, Record<string, string>][];

  it.each(PATHS)(
    'over %s %j: chunk framing that turns odd mid-body is answered 400, read by the client; the origin sees the request aborted',
    async (protocol, env) => {
      const e = await tunnel(protocol, env);
      const sockets = openSockets(e.edge.child.pid!);
      const { answer, writeError } = await sendBeforeReading(e.httpPort, CHUNKED_HEAD, { next: { ready: () => seen.includes('/upload'), bytes: 'zz\r\n' } });
      expect(writeError).toBeUndefined();
      expect(answer).toMatch(/^HTTP\/1\.1 400 /);
      await until(() => openSockets(e.edge.child.pid!) <= sockets, 4000, "the edge's socket closed at the client's FIN", 50);
      await until(() => aborted.includes('/upload'), 4000, 'the request aborted at the origin');
    },
    60_000,
  );

  it.each(PATHS)(
    'over %s %j: a body slower than the request timeout is answered 408, read by the client',
    async (protocol, env) => {
      const e = await tunnel(protocol, env);
      const { answer, writeError } = await sendBeforeReading(
        e.httpPort,
        Buffer.concat([Buffer.from(`POST /upload HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: ${16 * MIB}\r\n\r\n`), Buffer.alloc(MIB, 0x61)]),
      );
      expect(writeError).toBeUndefined();
      expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    },
    60_000,
  );

  it.each([
    ['a head too large', BIG_HEAD, /^HTTP\/1\.1 431 /, {}],
    ['a head too large (Node reads the socket itself)', BIG_HEAD, /^HTTP\/1\.1 431 /, { OXY_HTTP1_STREAMS: '0' }],
    ['bytes that are not HTTP', `NOT HTTP AT ALL\r\n\r\n${'x'.repeat(MIB)}`, /^HTTP\/1\.1 400 /, {}],
    // Node's server closes after the answer the client asked to be its last, whose body is still coming.
    [
      'an upload to a hostname no tunnel serves, Connection: close',
      `POST / HTTP/1.1\r\nHost: nowhere.example.com\r\nConnection: close\r\nContent-Length: ${16 * MIB}\r\n\r\n${'x'.repeat(MIB)}`,
      /^HTTP\/1\.1 404 /,
      {},
    ],
    // Node's parser reads the socket natively and paused it (the body nobody reads): resumed, then detached.
    [
      'an upload to a hostname no tunnel serves, Connection: close (Node reads the socket itself)',
      `POST / HTTP/1.1\r\nHost: nowhere.example.com\r\nConnection: close\r\nContent-Length: ${16 * MIB}\r\n\r\n${'x'.repeat(MIB)}`,
      /^HTTP\/1\.1 404 /,
      { OXY_HTTP1_STREAMS: '0' },
    ],
  ] as [string, string, RegExp, Record<string, string>][])(
    "Node's server: %s is answered, read by the client",
    async (_what, first, status, env) => {
      const e = await tunnel('http2', env);
      const sockets = openSockets(e.edge.child.pid!);
      const { answer, writeError } = await sendBeforeReading(e.httpPort, first);
      expect(writeError).toBeUndefined();
      expect(answer).toMatch(status);
      await until(() => openSockets(e.edge.child.pid!) <= sockets, 4000, "the edge's socket closed at the client's FIN", 50);
    },
    60_000,
  );

  it('the CONNECT proxy: a refused CONNECT followed at once by the tunnel bytes is answered 400, read by the client', async () => {
    const e = await tunnel('http2', {}, ['--proxy-listen', '127.0.0.1:0', '--proxy-allow', `127.0.0.1:${originPort}`]);
    const proxyPort = Number((await e.edge.waitFor(/CONNECT proxy listener ready address=127\.0\.0\.1:(\d+)/))[1]);
    const sockets = openSockets(e.edge.child.pid!);
    const { answer, writeError } = await sendBeforeReading(proxyPort, `CONNECT nowhere HTTP/1.1\r\nHost: nowhere\r\n\r\n${'x'.repeat(MIB)}`);
    expect(writeError).toBeUndefined();
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    await until(() => openSockets(e.edge.child.pid!) <= sockets, 4000, "the edge's socket closed at the client's FIN", 50);
  }, 60_000);

  it.each([
    ['the public listener (a head too large)', BIG_HEAD, false],
    ['the CONNECT proxy (a refused CONNECT)', 'CONNECT nowhere HTTP/1.1\r\nHost: nowhere\r\n\r\n', true],
  ] as [string, string, boolean][])(
    '%s: a client that neither ends nor closes is let go after 5 s',
    async (_what, first, proxy) => {
      const e = await tunnel('http2', {}, proxy ? ['--proxy-listen', '127.0.0.1:0', '--proxy-allow', `127.0.0.1:${originPort}`] : []);
      const port = proxy ? Number((await e.edge.waitFor(/CONNECT proxy listener ready address=127\.0\.0\.1:(\d+)/))[1]) : e.httpPort;
      const sockets = openSockets(e.edge.child.pid!);
      // Half-open: the edge's FIN does not end it.
      const s = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      let answer = '';
      s.on('data', (c: Buffer) => (answer += c.toString('latin1')));
      s.on('error', () => undefined);
      s.write(first);
      await until(() => /^HTTP\/1\.1 4\d\d /.test(answer), 15_000, 'the answer');
      const answeredAt = Date.now();
      await until(() => openSockets(e.edge.child.pid!) <= sockets, 15_000, "the edge's socket for the client closed", 50);
      expect(Date.now() - answeredAt).toBeGreaterThan(4000);
      s.destroy();
    },
    60_000,
  );

  it.each([
    ['the fast path (a 400 mid-body)', 'http2', true],
    ["Node's server (a head too large)", 'quic', false],
  ] as [string, Protocol, boolean][])(
    '%s: a client that sends forever is let go after 64 MiB',
    async (_what, protocol, chunked) => {
      const e = await tunnel(protocol);
      // Half-open: the edge's FIN does not end its side.
      const s = connect({ port: e.httpPort, host: '127.0.0.1', allowHalfOpen: true });
      let answer = '';
      let writeError: string | undefined;
      s.on('data', (c: Buffer) => (answer += c.toString('latin1')));
      s.on('error', (err: NodeJS.ErrnoException) => (writeError ??= err.code));
      await new Promise((r) => s.once('connect', r));
      if (chunked) {
        await write(s, CHUNKED_HEAD);
        await until(() => seen.includes('/upload'), 15_000, 'the request under way');
        await write(s, 'zz\r\n');
      } else await write(s, BIG_HEAD);
      await until(() => answer.length > 0, 15_000, 'the answer');
      const answeredAt = Date.now();
      let sent = 0;
      const piece = Buffer.alloc(256 * 1024, 0x61);
      while (!s.destroyed && sent < 256 * MIB && Date.now() - answeredAt < 20_000) {
        await write(s, piece);
        sent += piece.length;
      }
      expect(writeError).toMatch(/^(EPIPE|ECONNRESET)$/);
      expect(sent).toBeGreaterThanOrEqual(64 * MIB);
      expect(sent).toBeLessThan(128 * MIB);
      expect(Date.now() - answeredAt).toBeLessThan(4500);
      s.destroy();
    },
    60_000,
  );

  // util/http-server.ts's fallback, for a Node that lacks the internals the lingering close uses.
  it.each([
    ['bytes that are not HTTP', 'NOT HTTP AT ALL\r\n\r\n', /^HTTP\/1\.1 400 /],
    [
      'an upload to a hostname no tunnel serves, Connection: close',
      'POST / HTTP/1.1\r\nHost: nowhere.example.com\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello',
      /^HTTP\/1\.1 404 /,
    ],
  ] as [string, string, RegExp][])(
    "with OXY_HTTP_INTERNALS=0 the edge says so once at start, and on Node's server %s is still answered and the connection closed after it",
    async (_what, request, status) => {
      const e = await tunnel('http2', { OXY_HTTP_INTERNALS: '0', OXY_HTTP1_STREAMS: '0' });
      expect(e.edge.count(/close once their answer is flushed/)).toBe(1);
      const sockets = openSockets(e.edge.child.pid!);
      // Half-open: the edge's FIN, not the client, ends the exchange.
      const s = connect({ port: e.httpPort, host: '127.0.0.1', allowHalfOpen: true });
      let answer = '';
      let error: string | undefined;
      let ended = false;
      s.on('data', (c: Buffer) => (answer += c.toString('latin1')));
      s.on('error', (err: NodeJS.ErrnoException) => (error ??= err.code));
      s.on('end', () => (ended = true));
      await write(s, request);
      await until(() => ended, 15_000, `the edge's FIN (answer so far: ${JSON.stringify(answer.slice(0, 80))}, error: ${error})`);
      await until(() => openSockets(e.edge.child.pid!) <= sockets, 4000, "the edge's socket closed", 50);
      expect(error).toBeUndefined();
      expect(answer).toMatch(status);
      s.destroy();
    },
    60_000,
  );

  it('with OXY_EDGE_LINGER=0 the edge closes at once: the reset overtakes the client reading, its answer is lost', async () => {
    const e = await tunnel('http2', { OXY_EDGE_LINGER: '0' });
    const { answer, writeError } = await sendBeforeReading(e.httpPort, BIG_HEAD);
    expect(writeError).toMatch(/^(EPIPE|ECONNRESET)$/);
    expect(answer).toBe('');
  }, 60_000);
});
