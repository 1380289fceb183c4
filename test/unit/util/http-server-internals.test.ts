// What util/http-server.ts takes from Node's HTTP server beyond its documented API (its
// NodeHttpInternals), checked on the Node that runs the tests: a Node upgrade that drops one fails
// here by its name, before an edge on that Node answers refusals without lingering. Then the
// lingering close those internals make, in-process over loopback, and the fallback
// (`OXY_HTTP_INTERNALS=0`, what an edge on such a Node does): answered, closed once flushed.
import { once } from 'node:events';
import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo, connect, Socket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { until } from '../../helpers/until.js';

const MODULE = '../../../src/engine/util/http-server.js';

const servers: Server[] = [];
afterEach(async () => {
  vi.unstubAllEnvs();
  vi.resetModules();
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

async function listen(server: Server): Promise<number> {
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

/** A raw client (half-open: the server's FIN does not end its side): what it read, the error it met, whether the server's FIN came (not a reset). */
function client(port: number) {
  const s = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  const got = { answer: '', error: undefined as string | undefined, ended: false, closed: false };
  s.on('data', (c: Buffer) => (got.answer += c.toString('latin1')));
  s.on('error', (err: NodeJS.ErrnoException) => (got.error ??= err.code));
  s.on('end', () => (got.ended = true));
  s.on('close', () => (got.closed = true));
  return { s, got, write: (b: Buffer | string) => new Promise<void>((r) => s.write(b, () => r())) };
}

describe("Node's HTTP server internals util/http-server.ts relies on", () => {
  it('are all present on this Node (nodeHttpInternals: none missing)', async () => {
    const { nodeHttpInternals } = await import(MODULE);
    expect(nodeHttpInternals()).toEqual({ usable: true, switchedOff: false, missing: [] });
  });

  it("destroySoon: Node's server ends a connection after its last answer (Connection: close) with socket.destroySoon()", async () => {
    const calls: string[] = [];
    const server = createServer((_req, res) => res.writeHead(404, { connection: 'close' }).end());
    server.on('connection', (socket: Socket) => {
      const own = socket.destroySoon.bind(socket);
      socket.destroySoon = () => {
        calls.push('destroySoon');
        own();
      };
    });
    const c = client(await listen(server));
    await c.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(() => c.got.ended, 5000, "the server's FIN");
    expect(c.got.answer).toMatch(/^HTTP\/1\.1 404 /);
    expect(calls, 'resOnFinish no longer calls socket.destroySoon(): the 404 / Connection: close refusals do not linger').toEqual(['destroySoon']);
  });

  it("data-unconsumes: a 'data' listener added to a connection takes it from Node's parser (native on TCP): the next request is not parsed", async () => {
    const urls: string[] = [];
    let after = '';
    const server = createServer((req, res) => {
      urls.push(req.url ?? '');
      res.end('one', () => {
        req.socket.removeAllListeners('data');
        req.socket.on('data', (c: Buffer) => (after += c.toString('latin1')));
      });
    });
    const c = client(await listen(server));
    await c.write('GET /one HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(() => c.got.answer.endsWith('one'), 5000, 'the first answer');
    await c.write('GET /two HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(() => after.length > 0 || urls.length > 1, 5000, 'the second request, parsed or read in JS');
    expect(urls, "Node's server parsed a request after a 'data' listener was added: the parser was not detached (unconsume)").toEqual(['/one']);
    expect(after).toBe('GET /two HTTP/1.1\r\nHost: x\r\n\r\n');
  });
});

/** createHttpServer from a fresh copy of the module (its switch read now). */
async function freshServer(handler: RequestListener, internals = true): Promise<{ port: number; server: Server; sockets: Socket[] }> {
  if (!internals) vi.stubEnv('OXY_HTTP_INTERNALS', '0');
  vi.resetModules();
  const { createHttpServer, nodeHttpInternals } = await import(MODULE);
  expect(nodeHttpInternals().usable).toBe(internals);
  const server: Server = createHttpServer(handler, { headersMs: 1000 });
  const sockets: Socket[] = [];
  server.on('connection', (s: Socket) => sockets.push(s));
  return { port: await listen(server), server, sockets };
}

/** An upload answered 404 before its body, as the last answer of its connection. */
const refuseUpload = (req: IncomingMessage, res: ServerResponse): void => {
  if (req.url === '/upload') res.writeHead(404, { connection: 'close', 'content-length': 0 }).end();
  else res.end('ok');
};
const UPLOAD = `POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: ${64 * 1024 * 1024}\r\n\r\n`;

describe('createHttpServer: refusals with the internals, and without (OXY_HTTP_INTERNALS=0)', () => {
  it('with them: an upload answered 404 / Connection: close drains what the client still sends, never parses it, and ends with a FIN', async () => {
    const seen: string[] = [];
    const { port } = await freshServer((req, res) => {
      seen.push(req.url ?? '');
      refuseUpload(req, res);
    });
    const c = client(port);
    await c.write(UPLOAD + 'a'.repeat(64 * 1024));
    await until(() => c.got.answer.length > 0, 5000, 'the answer');
    // The rest of the body, with a request inside it: dropped, not parsed.
    await c.write(`GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n${'a'.repeat(4 * 1024 * 1024)}`);
    c.s.end();
    await until(() => c.got.closed, 5000, 'the connection closed');
    expect(c.got).toMatchObject({ error: undefined, ended: true });
    expect(c.got.answer).toMatch(/^HTTP\/1\.1 404 /);
    expect(seen).toEqual(['/upload']);
  });

  it('with them: bytes that are not HTTP are answered 400, and what follows is drained until the FIN', async () => {
    const { port } = await freshServer(refuseUpload);
    const c = client(port);
    await c.write('NOT HTTP AT ALL\r\n\r\n');
    await until(() => c.got.answer.length > 0, 5000, 'the answer');
    await c.write('x'.repeat(4 * 1024 * 1024));
    c.s.end();
    await until(() => c.got.closed, 5000, 'the connection closed');
    expect(c.got).toMatchObject({ error: undefined, ended: true });
    expect(c.got.answer).toBe('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
  });

  it.each([
    ['bytes that are not HTTP', 'NOT HTTP AT ALL\r\n\r\n', 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n'],
    [
      'a head too large',
      `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20 * 1024)}\r\n\r\n`,
      'HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n',
    ],
    ['an upload answered 404 / Connection: close', `POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello`, /^HTTP\/1\.1 404 /],
  ] as [string, string, string | RegExp][])(
    'without them: %s is answered, and the connection closes once the answer is flushed (Node destroySoon, no drain)',
    async (_what, request, answer) => {
      const { port, sockets } = await freshServer(refuseUpload, false);
      const c = client(port);
      await c.write(request);
      // The client sends nothing more and does not end: the server closes by itself.
      await until(() => c.got.ended && sockets[0]?.destroyed, 5000, "the server's FIN and its socket closed");
      expect(c.got.error).toBeUndefined();
      if (typeof answer === 'string') expect(c.got.answer).toBe(answer);
      else expect(c.got.answer).toMatch(answer);
      expect(sockets).toHaveLength(1);
      c.s.end();
      await until(() => c.got.closed, 5000, 'the client closed');
      expect(c.got.error).toBeUndefined();
      expect(sockets[0]?.destroySoon, "Node's own destroySoon, not the lingering one").toBe(Socket.prototype.destroySoon);
    },
  );
});
