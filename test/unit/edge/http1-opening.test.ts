// The public listener's fast path queues a request's body while its tunnel stream opens (a
// connection at its stream limit, a peer edge still being dialed). The queue is bounded: above
// OPENING_LIMIT the client is not read until the stream takes it, then the upload goes on and
// arrives whole. Real sockets on loopback for the client and the "connector" end of the stream;
// the tunnel connection is a stand-in whose openStream() resolves when the test says so.
import { EventEmitter } from 'node:events';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { Gauge, Registry } from 'prom-client';
import { afterEach, expect, it } from 'vitest';
import { until } from '../../helpers/until.js';
import { Http1FastPath, OPENING_LIMIT } from '../../../src/engine/edge/http1-fast.js';
import type { LiveConnection, TunnelRegistry } from '../../../src/engine/edge/registry.js';
import type { StoreView } from '../../../src/engine/edge/store-view.js';
import { createLogger } from '../../../src/engine/observe/log.js';
import { Http1RecordReader } from '../../../src/engine/protocol/http1.js';
import { readStreamHeader } from '../../../src/engine/protocol/stream-header.js';
import type { TunnelConnection, TunnelStream } from '../../../src/engine/transport/types.js';
import { httpTimeouts } from '../../../src/engine/util/http-server.js';

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const fn of cleanup.splice(0)) fn();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function listen(onConnection: (s: net.Socket) => void): Promise<number> {
  const server = net.createServer(onConnection);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanup.push(() => server.close());
  return (server.address() as net.AddressInfo).port;
}

/** A fast path whose one tunnel connection opens streams only when `open()` is called: each is one end of a loopback TCP pair. */
async function edgeWithSlowOpens(responseTimeoutMs = 30_000) {
  const opening = new Gauge({ name: 'opening_bytes', help: 'test', registers: [new Registry()] });
  const waiting: (() => void)[] = [];
  const connectorEnds: net.Socket[] = [];
  const pairPort = await listen((s) => connectorEnds.push(s));
  const conn = {
    isClosed: false,
    unansweredMs: () => 0,
    probe: async () => true,
    openStream: () =>
      new Promise<TunnelStream>((resolve) => {
        waiting.push(() => {
          const s = net.connect(pairPort, '127.0.0.1');
          s.on('error', () => undefined);
          cleanup.push(() => s.destroy());
          s.once('connect', () => resolve(s));
        });
      }),
  } as unknown as TunnelConnection;
  const live = { id: 'c1', tunnelId: 'T', connectorId: 'x', connIndex: 0, draining: false, http1: true, http1Chunked: true, conn } as LiveConnection;
  const fast = new Http1FastPath({
    // The fast path listens for the view's reloads (routes may change).
    view: Object.assign(new EventEmitter(), { tunnelForHost: () => 'T' }) as unknown as StoreView,
    registry: { pick: () => live, connections: () => [live] } as unknown as TunnelRegistry,
    log: createLogger({ level: 'fatal' }),
    opening,
    responseTimeoutMs,
    timeouts: httpTimeouts(),
    handOff: (s) => {
      s.destroy();
      throw new Error('the fast path handed the connection over');
    },
  });
  cleanup.push(() => fast.close());
  const port = await listen((s) => fast.accept(s));
  const queued = async () => (await opening.get()).values[0]?.value ?? 0;
  return { port, queued, waiting, connectorEnds };
}

/** Sends `size` random bytes as fast as the socket takes them; `sent` counts what it took. */
function upload(client: net.Socket, size: number) {
  const hash = createHash('sha256');
  const state = { sent: 0, done: false, sha: '' };
  const piece = 64 * 1024;
  const more = (): void => {
    while (state.sent < size) {
      const chunk = randomBytes(Math.min(piece, size - state.sent));
      hash.update(chunk);
      state.sent += chunk.length;
      if (!client.write(chunk)) return void client.once('drain', more);
    }
    state.done = true;
    state.sha = hash.digest('hex');
  };
  more();
  return state;
}

/** Waits until `value()` stops changing for `quietMs` (bounded). */
async function settled(value: () => number, quietMs = 300, maxMs = 10_000): Promise<number> {
  let last = value();
  let since = Date.now();
  for (const start = Date.now(); Date.now() - start < maxMs; await sleep(50)) {
    const now = value();
    if (now !== last) [last, since] = [now, Date.now()];
    else if (Date.now() - since >= quietMs) return now;
  }
  return last;
}

it('a client uploading fast while its stream opens is held to the budget, then its upload arrives byte-exact', async () => {
  const { port, queued, waiting, connectorEnds } = await edgeWithSlowOpens();
  const size = 64 * 1024 * 1024;
  const client = net.connect(port, '127.0.0.1');
  cleanup.push(() => client.destroy());
  await new Promise((r) => client.once('connect', r));
  let answer = '';
  client.on('data', (d: Buffer) => (answer += d.toString('latin1')));
  client.write(`POST /up HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: ${size}\r\n\r\n`);
  const state = upload(client, size);

  // The stream is not open: the edge reads until its queue passes the budget, then stops. Waited
  // for before the client's sending is taken as settled: under load a 300 ms pause came first.
  await until(async () => (await queued()) > OPENING_LIMIT / 2, 30_000, 'the edge to queue half its budget');
  const sentWhileHeld = await settled(() => state.sent, 1000);
  const held = await queued();
  expect(waiting.length).toBe(1);
  // The rest waits in the client and the kernel's socket buffers, not in the edge (which read
  // all 64 MiB into its queue before).
  expect(state.done).toBe(false);
  expect(sentWhileHeld).toBeLessThan(size / 2);
  expect(held).toBeGreaterThan(OPENING_LIMIT / 2);
  expect(held).toBeLessThanOrEqual(OPENING_LIMIT + 64 * 1024);

  // The stream opens: the queue goes on it, the client is read again, every byte arrives.
  waiting[0]();
  await sleep(100);
  const connector = connectorEnds[0];
  const header = await readStreamHeader(connector, { expect: 'request' });
  expect(header.kind).toBe('http1');
  const hash = createHash('sha256');
  let received = 0;
  const finished = new Promise<void>((resolve) => {
    const reader = new Http1RecordReader(
      (head) => expect(head.bodyLength).toBe(size),
      (bytes) => {
        hash.update(bytes);
        received += bytes.length;
        if (received === size) resolve();
      },
    );
    connector.on('data', (d: Buffer) => reader.push(d));
  });
  await finished;
  const body = `${received} ${hash.digest('hex')}`;
  connector.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  // Its first bytes waited for (bounded): settling alone took "nothing yet for 200 ms" as done at load ~24.
  await until(() => answer.length > 0, 30_000, 'the answer to reach the client');
  await settled(() => answer.length, 500);
  expect(state.done).toBe(true);
  expect(answer).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
  expect(answer.endsWith(`\r\n\r\n${size} ${state.sha}`)).toBe(true);
  expect(await queued()).toBe(0);
}, 60_000);

it('a client that goes away while held: once the stream opens its request is aborted and nothing stays queued', async () => {
  const { port, queued, waiting, connectorEnds } = await edgeWithSlowOpens();
  const client = net.connect(port, '127.0.0.1');
  client.on('error', () => undefined);
  await new Promise((r) => client.once('connect', r));
  client.write('POST /up HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 33554432\r\n\r\n');
  const state = upload(client, 32 * 1024 * 1024);
  await settled(() => state.sent);
  expect(await queued()).toBeGreaterThan(OPENING_LIMIT / 2);
  // Not read while held, the edge cannot see the client leave (as any paused socket) until the stream opens.
  client.destroy();
  waiting[0]();
  for (let i = 0; i < 200 && ((await queued()) > 0 || connectorEnds.length === 0); i++) await sleep(20);
  expect(await queued()).toBe(0);
  // The origin's request is aborted (the stream goes), never left waiting for the rest of the body.
  const connector = connectorEnds[0];
  connector.resume();
  if (!connector.destroyed && connector.readableEnded === false) await new Promise((r) => connector.once('close', r));
});

it('a request whose body went partly straight to the stream is not sent again without it (502, not a truncated resend)', async () => {
  const { port, waiting, connectorEnds } = await edgeWithSlowOpens();
  const client = net.connect(port, '127.0.0.1');
  cleanup.push(() => client.destroy());
  await new Promise((r) => client.once('connect', r));
  let answer = '';
  client.on('data', (d: Buffer) => (answer += d.toString('latin1')));
  client.write('POST /up HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 8\r\n\r\nfour');
  for (let i = 0; i < 100 && waiting.length === 0; i++) await sleep(10);
  waiting[0]();
  for (let i = 0; i < 100 && connectorEnds.length === 0; i++) await sleep(10);
  const connector = connectorEnds[0];
  await readStreamHeader(connector, { expect: 'request' });
  let body = '';
  const whole = new Promise<void>((resolve) => {
    const reader = new Http1RecordReader(
      () => undefined,
      (bytes) => {
        body += bytes.toString('latin1');
        if (body.length === 8) resolve();
      },
    );
    connector.on('data', (d: Buffer) => reader.push(d));
  });
  // The rest of the body after the stream opened: it goes straight to the stream, past the records.
  client.write('more');
  await whole;
  expect(body).toBe('fourmore');
  // The connector ends the stream with no answer, as one shutting down does.
  connector.end();
  await settled(() => answer.length, 200);
  expect(answer).toMatch(/^HTTP\/1\.1 502 /);
  expect(waiting.length).toBe(1);
});

it('an upload slower than the answer deadline is answered; an unanswered one gets its 504 only after its body ended', async () => {
  const { port, waiting, connectorEnds } = await edgeWithSlowOpens(400);
  for (const [i, path] of ['/count', '/mute'].entries()) {
    const client = net.connect(port, '127.0.0.1');
    cleanup.push(() => client.destroy());
    await new Promise((r) => client.once('connect', r));
    let reply = '';
    client.on('data', (d: Buffer) => (reply += d.toString('latin1')));
    client.write(`POST ${path} HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 8192\r\n\r\n`);
    await until(() => waiting.length > i, 10_000, 'the stream to be asked for');
    waiting[i]();
    await until(() => connectorEnds.length > i, 10_000, 'the stream to open');
    const connector = connectorEnds[i];
    await readStreamHeader(connector, { expect: 'request' });
    let received = 0;
    const reader = new Http1RecordReader(
      () => undefined,
      (bytes) => (received += bytes.length),
    );
    connector.on('data', (d: Buffer) => reader.push(d));
    // 8 KiB in 1 KiB pieces 200 ms apart: four times the deadline.
    for (let k = 0; k < 8; k++) {
      await sleep(200);
      client.write(Buffer.alloc(1024, k));
    }
    const lastSentAt = Date.now();
    // (a 504 too early ends the stream before the body is whole)
    await until(() => received === 8192 || reply !== '', 10_000, 'the body at the connector');
    if (path === '/count') connector.write('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n8192');
    await until(() => reply.includes('\r\n\r\n'), 10_000, 'an answer');
    const answeredAt = Date.now();
    if (path === '/count') expect(reply).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\n8192$/);
    else {
      expect(reply).toMatch(/^HTTP\/1\.1 504 /);
      expect(answeredAt).toBeGreaterThanOrEqual(lastSentAt);
    }
  }
}, 60_000);
