// The connector's origin sockets pumped by the addon (the connector's QUIC on ngtcp2: an http1
// stream's spliced origin socket is handed to cpp/quic-pump.cc once connected, so its answers never
// reach JS). Processes and real sockets: curl and many requests, bulk bytes both ways byte-exact
// (a Content-Length and a chunked upload, an origin that reads slowly), an origin that closes or
// resets mid-answer or drops a request unanswered, a client that stops reading (the origin is
// held, then everything arrives), the status metric per request; and the same build with
// OXY_QUIC_PUMP=0 keeps the socket in JS. Request bodies are read off the stream by the addon
// (BODY bytes to the origin socket without JS) while each HEAD still picks its rule: uploads to
// rules that change mid-connection (another spliced origin, one relayed through undici), an
// origin that closes mid-upload; OXY_QUIC_PUMP=heads sends the bodies through JS as before.
//
// The pump is the connector's: the edge on either library sees the same stream bytes. One file per
// edge library (pump.test.ts, pump-quiche-edge.test.ts), so that the two run in parallel.
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { holdThenRead } from '../../helpers/origins.js';
import { useWebTunnel } from '../../helpers/processes.js';
import { Client, expectServes, getVia, quicTunnel, sha256hex } from './support.js';

const HOST = 'app.example.com';
const NGTCP2 = { OXY_QUIC_IMPL: 'ngtcp2', OXY_QUIC_SERVER_IMPL: 'ngtcp2' };
const BULK = randomBytes(24 * 1024 * 1024);
const MIB = randomBytes(1024 * 1024);
/** /held's body: MIB this many times, written with backpressure. */
const HELD_MIB = 160;

let origin: Server;
let originUrl = '';
/** Bytes /held's answer has handed to its socket so far. */
let heldWritten = 0;

export function pumpSuite(edgeLib: 'ngtcp2' | 'quiche'): void {
  const t = useWebTunnel();

  beforeAll(async () => {
    origin = createServer((req, res) => {
      if (req.url === '/bulk') return void res.end(BULK);
      if (req.url === '/cut' || req.url === '/reset') {
        // 100 kB of a 1 MB answer, then the connection goes (FIN, or RST).
        res.writeHead(200, { 'content-length': String(1_000_000) });
        res.write(Buffer.alloc(100_000, 0x61), () => (req.url === '/cut' ? res.socket?.destroy() : res.socket?.resetAndDestroy()));
        return;
      }
      if (req.url === '/drop') return void req.socket.destroy();
      if (req.url === '/held') {
        heldWritten = 0;
        res.writeHead(200, { 'content-length': String(HELD_MIB * MIB.length) });
        let left = HELD_MIB;
        const more = (): void => {
          while (left > 0) {
            left--;
            heldWritten += MIB.length;
            if (!res.write(MIB)) return void res.once('drain', more);
          }
          res.end();
        };
        more();
        return;
      }
      if (req.url === '/close-up' || req.url === '/reset-up') {
        // Takes 1 MiB of the upload, then the connection goes (FIN, or RST) unanswered.
        let bytes = 0;
        req.on('data', (c: Buffer) => {
          if ((bytes += c.length) < MIB.length || req.socket.destroyed) return;
          if (req.url === '/close-up') req.socket.destroy();
          else req.socket.resetAndDestroy();
        });
        return;
      }
      if (req.method === 'POST') {
        const hash = createHash('sha256');
        let bytes = 0;
        // /slow-up: read nothing for a second (the connector's writes for the socket pile up).
        if (req.url === '/slow-up') {
          req.pause();
          setTimeout(() => req.resume(), 1000);
        }
        req.on('data', (c: Buffer) => ((bytes += c.length), hash.update(c)));
        req.on('end', () => res.end(`${bytes} ${hash.digest('hex')}`));
        return;
      }
      res.end(`hello ${req.url}`);
    });
    // An idle keep-alive socket the origin closes as a request goes out on it gets that request a
    // 502 when it has a body (cloudflared's Go transport resends only body-less ones too). Node's
    // 5 s default is within this suite's pauses at load: a 24 MiB upload met it twice.
    origin.keepAliveTimeout = 120_000;
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
    originUrl = `http://127.0.0.1:${(origin.address() as AddressInfo).port}`;
  });
  afterAll(() => origin?.close());

  /** A GET whose body read fails (the answer was cut): the error, or undefined when it arrived whole. */
  const cutGet = (port: number, path: string) =>
    request(`http://127.0.0.1:${port}${path}`, { headers: { host: 'app.example.com' } }).then(
      (r) =>
        r.body.arrayBuffer().then(
          (b) => (b.byteLength === 1_000_000 ? undefined : new Error(`short body ${b.byteLength}`)),
          (err: Error) => err,
        ),
      (err: Error) => err,
    );

  /** Request body bytes the connector's pumps wrote to their origins without JS (its debug lines, once each pump closed). */
  const bodyBytesPumped = (output: string): number =>
    [...output.matchAll(/(\d+) request body bytes went to the origin without JS/g)].reduce((sum, m) => sum + Number(m[1]), 0);

  describe(`origin sockets pumped by the addon, edge on ${edgeLib}`, () => {
    const tunnel = (extra: Record<string, string> = {}) =>
      quicTunnel(t, originUrl, {
        connections: 1,
        edgeEnv: { OXY_QUIC_SERVER_IMPL: edgeLib },
        connectorEnv: { ...NGTCP2, NODE_DEBUG: 'oxy:connector:http1', ...extra },
      });

    it('serves curl, 300 concurrent requests, bulk both ways byte-exact, a chunked upload and a slow origin reader', async () => {
      const e = await tunnel();
      await expectServes(e.httpPort, BULK);
      expect(e.connector.output).toMatch(/origin socket pumped by the addon/);
      // A chunked upload (no length: undici chunks a stream body), 24 MiB in 1 MiB pieces.
      const chunked = await request(`http://127.0.0.1:${e.httpPort}/up-chunked`, {
        method: 'POST',
        body: Readable.from(
          (function* () {
            for (let off = 0; off < BULK.length; off += MIB.length) yield BULK.subarray(off, off + MIB.length);
          })(),
        ),
        headers: { host: 'app.example.com' },
      });
      expect(await chunked.body.text()).toBe(`${BULK.length} ${sha256hex(BULK)}`);
      // The origin reads nothing for a second: the connector holds at most ~1 MiB for it and pauses the stream.
      const slow = await request(`http://127.0.0.1:${e.httpPort}/slow-up`, { method: 'POST', body: BULK, headers: { host: 'app.example.com' } });
      expect(await slow.body.text()).toBe(`${BULK.length} ${sha256hex(BULK)}`);
      // Many requests in turn on one keep-alive connection, each answer whole: GETs (their HEAD
      // records handed over whole by the addon), uploads between them (BODY records through the
      // stream: the hand-over stops, then resumes) and heads too large for one packet.
      const small = randomBytes(100_000);
      for (let i = 0; i < 60; i++) {
        if (i % 3 === 0) expect((await getVia(e.httpPort, `/k${i}`)).body.toString()).toBe(`hello /k${i}`);
        else if (i % 3 === 1) {
          const up = await request(`http://127.0.0.1:${e.httpPort}/p${i}`, { method: 'POST', body: small, headers: { host: 'app.example.com' } });
          expect(await up.body.text()).toBe(`${small.length} ${sha256hex(small)}`);
        } else {
          const big = await request(`http://127.0.0.1:${e.httpPort}/b${i}`, { headers: { host: 'app.example.com', 'x-big': 'a'.repeat(8000) } });
          expect(await big.body.text()).toBe(`hello /b${i}`);
        }
      }
    }, 90_000);

    it('an origin that closes or resets mid-answer cuts that answer; one that drops a request unanswered gets the 502 page', async () => {
      const e = await tunnel();
      for (const path of ['/cut', '/reset', '/cut', '/reset']) {
        const err = await cutGet(e.httpPort, path);
        expect(err, path).toBeInstanceOf(Error);
        expect((await getVia(e.httpPort, '/after')).body.toString()).toBe('hello /after');
      }
      const dropped = await getVia(e.httpPort, '/drop');
      expect(dropped.status).toBe(502);
      expect(dropped.body.toString()).toMatch(/not reachable/);
      expect((await getVia(e.httpPort, '/after-drop')).body.toString()).toBe('hello /after-drop');
      expect(e.connector.output).toMatch(/origin socket pumped by the addon/);
      expect(e.connector.child.exitCode).toBeNull();
    }, 60_000);

    it('a client that stops reading holds the origin back, then gets every byte', async () => {
      const e = await tunnel();
      const client = connect(e.httpPort, '127.0.0.1');
      client.on('error', () => undefined);
      client.write('GET /held HTTP/1.1\r\nHost: app.example.com\r\n\r\n');
      // Held: the origin's writes stop growing while nobody reads (windows and buffers fill), then every byte arrives.
      const answer = await holdThenRead(client, () => heldWritten, HELD_MIB * MIB.length);
      client.destroy();
      expect(answer.held).toBe(true);
      expect(answer.heldAt).toBeLessThan(HELD_MIB * MIB.length);
      expect(answer.head).toMatch(/^HTTP\/1\.1 200 /);
      expect(answer.bytes).toBe(HELD_MIB * MIB.length);
      const expected = createHash('sha256');
      for (let i = 0; i < HELD_MIB; i++) expected.update(MIB);
      expect(answer.sha256).toBe(expected.digest('hex'));
    }, 90_000);

    it('counts each answer by status while the client keeps its connection open', async () => {
      const e = await tunnel();
      const metrics = Number((await e.connector.waitFor(/Starting metrics server on \/metrics address=127\.0\.0\.1:(\d+)/))[1]);
      for (let i = 0; i < 5; i++) expect((await getVia(e.httpPort, `/m${i}`)).status).toBe(200);
      const scrape = () => request(`http://127.0.0.1:${metrics}/metrics`).then((r) => r.body.text());
      await expect.poll(async () => /^oxyctl_tunnel_response_by_code\{status_code="200"\} (\d+)$/m.exec(await scrape())?.[1], { timeout: 5000 }).toBe('5');
    }, 60_000);

    it.each(['records', 'heads'] as const)(
      'uploads on one connection to rules that change (spliced, another origin, relayed through undici) arrive byte-exact; the addon reads the bodies (OXY_QUIC_PUMP=%s)',
      async (mode) => {
        // B: a second spliced origin that names itself.
        const b = createServer((req, res) => {
          const hash = createHash('sha256');
          let bytes = 0;
          req.on('data', (c: Buffer) => ((bytes += c.length), hash.update(c)));
          req.on('end', () => res.end(`B ${bytes} ${hash.digest('hex')}`));
        });
        await new Promise<void>((r) => b.listen(0, '127.0.0.1', r));
        try {
          const config = join(t.home, 'rules.yml');
          writeFileSync(
            config,
            `ingress:\n  - hostname: app.example.com\n    path: ^/b\n    service: http://127.0.0.1:${(b.address() as AddressInfo).port}\n` +
              `  - hostname: app.example.com\n    path: ^/r\n    service: ${originUrl}\n    originRequest:\n      httpHostHeader: app.example.com\n` +
              `  - service: ${originUrl}\n`,
          );
          const e = await quicTunnel(t, originUrl, {
            connections: 1,
            config,
            edgeEnv: { OXY_QUIC_SERVER_IMPL: edgeLib },
            connectorEnv: { ...NGTCP2, NODE_DEBUG: 'oxy:connector:http1', ...(mode === 'heads' ? { OXY_QUIC_PUMP: 'heads' } : {}) },
          });
          const body = BULK.subarray(0, 8 * MIB.length);
          const want = `${body.length} ${sha256hex(body)}`;
          const c = new Client(e.httpPort);
          const steps: [string, string, boolean, string][] = [
            ['/a1', 'POST', false, want],
            ['/b1', 'POST', true, `B ${want}`],
            ['/r1', 'POST', false, want],
            ['/a2', 'POST', true, want],
            ['/a3', 'GET', false, 'hello /a3'],
            ['/b2', 'POST', false, `B ${want}`],
            ['/a4', 'POST', false, want],
          ];
          for (const [path, method, chunked, expected] of steps) {
            c.send(HOST, method, path, method === 'POST' ? body : undefined, chunked);
            expect((await c.answer())?.body, path).toBe(expected);
          }
          // An origin that closes or resets mid-upload: the 502 page, and the next client connection is served.
          c.send(HOST, 'POST', '/close-up', body);
          expect((await c.answer())?.status).toBe(502);
          c.close();
          const next = new Client(e.httpPort);
          next.send(HOST, 'POST', '/reset-up', body, true);
          expect((await next.answer())?.status).toBe(502);
          next.close();
          const last = new Client(e.httpPort);
          last.send(HOST, 'POST', '/a5', body, true);
          expect((await last.answer())?.body).toBe(want);
          last.close();
          // Each pump's count is logged when it closes: the spliced uploads (6 × 8 MiB, each after a
          // rule change: less what came before its new origin connected, up to ~1 MiB and more under
          // load) went to the origins without JS. Handed over only at record boundaries (session 8's
          // rule) 12–16 MB did; quiet, 40+ MB do. At load 9+ a 2-core machine lets more of each upload
          // arrive before its origin connects (16.0–16.4 MB seen), so the bound is one whole upload
          // (a pump that never takes over reads 0).
          if (mode === 'records') await expect.poll(() => bodyBytesPumped(e.connector.output), { timeout: 10_000 }).toBeGreaterThan(body.length);
          else {
            await new Promise((r) => setTimeout(r, 500));
            expect(bodyBytesPumped(e.connector.output)).toBe(0);
          }
          expect(e.connector.child.exitCode).toBeNull();
        } finally {
          b.closeAllConnections();
          b.close();
        }
      },
      90_000,
    );

    it('with OXY_QUIC_PUMP=0 the origin socket stays in JS, and serves the same', async () => {
      const e = await tunnel({ OXY_QUIC_PUMP: '0' });
      await expectServes(e.httpPort, BULK);
      expect(await cutGet(e.httpPort, '/reset')).toBeInstanceOf(Error);
      expect(e.connector.output).not.toMatch(/origin socket pumped by the addon/);
    }, 60_000);
  });
}
