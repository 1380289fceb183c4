// Issue 16: one large answer on an http1 stream through edge + connector processes. The edge and
// the connector stop a direction only far above the Http2Stream's 16 KiB high-water mark (1 MiB
// unsent, for fewer pauses per MB), so what bounds their buffers is checked here: a client that
// stops reading holds the origin's writes within a bound (the windows and socket buffers of the
// path, not the answer's size), and once it reads again the answer arrives byte-exact.
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { oxyOk, tempHome } from '../../helpers/cli.js';
import { OxyProcess, PROTOCOLS, startConnector, startEdge } from '../../helpers/processes.js';

const HOST = 'bulk.example.com';
const MiB = 1024 * 1024;
const SIZE = 160 * MiB;
/** What the path may hold for a client that does not read: socket buffers, the 8 MiB stream window, 1 MiB per side. */
const BOUND = 48 * MiB;

/** Deterministic bytes: block i of 64 KiB is filled with (i * 7) & 255, and its first 4 bytes hold i. */
const block = (i: number): Buffer => {
  const b = Buffer.alloc(64 * 1024, (i * 7) & 255);
  b.writeUInt32BE(i, 0);
  return b;
};

/** An origin whose GET /bytes answers SIZE bytes, writing only while its socket takes them; `sent` counts them. */
async function countingOrigin(): Promise<{ server: Server; port: number; sent: () => number; hash: string }> {
  let sent = 0;
  const h = createHash('sha256');
  for (let i = 0; i < SIZE / (64 * 1024); i++) h.update(block(i));
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-length': String(SIZE) });
    let i = 0;
    const pump = (): void => {
      while (i < SIZE / (64 * 1024)) {
        const b = block(i++);
        sent += b.length;
        if (!res.write(b)) return void res.once('drain', pump);
      }
      res.end();
    };
    pump();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port, sent: () => sent, hash: h.digest('hex') };
}

describe.each(PROTOCOLS)('one large answer on an http1 stream, over %s', (protocol) => {
  let home: { home: string; cleanup: () => void };
  const procs: OxyProcess[] = [];
  let origin: Awaited<ReturnType<typeof countingOrigin>>;
  let httpPort = 0;

  beforeAll(async () => {
    home = tempHome();
    origin = await countingOrigin();
    await oxyOk(home.home, ['tunnel', 'create', 'bulk']);
    await oxyOk(home.home, ['tunnel', 'route', 'dns', 'bulk', HOST]);
    const e = await startEdge(home.home);
    procs.push(e.edge);
    httpPort = e.httpPort;
    procs.push((await startConnector(home.home, e.tunnelPort, ['--url', `http://127.0.0.1:${origin.port}`, 'bulk'], 1, protocol)).connector);
  });

  afterAll(async () => {
    await Promise.all(procs.map((p) => p.stop('SIGKILL')));
    origin.server.closeAllConnections();
    origin.server.close();
    home.cleanup();
  });

  it('a client that stops reading holds the origin within a bound; reading again, it gets every byte', async () => {
    const s = net.connect(httpPort, '127.0.0.1');
    s.on('error', () => undefined);
    await new Promise((r) => s.once('connect', r));
    const h = createHash('sha256');
    let head = '';
    let body = 0;
    let stalled: number | undefined;
    s.on('data', (d: Buffer) => {
      if (head.indexOf('\r\n\r\n') < 0) {
        head += d.toString('latin1');
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        d = d.subarray(d.length - (head.length - end - 4));
        head = head.slice(0, end + 4);
      }
      h.update(d);
      body += d.length;
      if (body >= 2 * MiB && !s.isPaused() && stalled === undefined) s.pause();
    });
    s.write(`GET /bytes HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
    // Wait until the origin's writes stop moving (the path is full), at most 30 s.
    let last = -1;
    for (let i = 0; i < 60; i++) {
      await new Promise((r) => setTimeout(r, 500));
      const now = origin.sent();
      if (s.isPaused() && now === last) break;
      last = now;
    }
    stalled = origin.sent();
    expect(s.isPaused()).toBe(true);
    expect(stalled).toBeLessThan(SIZE);
    expect(stalled - body).toBeLessThan(BOUND);
    s.resume();
    await expect.poll(() => body, { timeout: 60_000, interval: 100 }).toBe(SIZE);
    s.destroy();
    expect(head).toMatch(/^HTTP\/1\.1 200 /);
    expect(h.digest('hex')).toBe(origin.hash);
  }, 120_000);
});
