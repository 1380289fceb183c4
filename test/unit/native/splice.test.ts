// The kernel relay (splice(2) on the addon's thread) between two loopback TCP connections, as
// the CONNECT proxy uses it: client ⇄ [near | relay | far] ⇄ server. Bytes both ways, in
// order with what Node had read before, each end passed on as a half-close, counted live
// and at the end; a destroyed socket cancels it, a reset fails it.
import { createHash } from 'node:crypto';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { socketBytes, spliceSockets, type SpliceOutcome } from '../../../src/engine/native/index.js';

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const fn of cleanup.splice(0)) fn();
});

/** A connected loopback pair: [accepted, dialled], both half-open capable as the proxy's are. */
async function pair(): Promise<[net.Socket, net.Socket]> {
  const server = net.createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const dialled = net.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen: true });
  const socket = await accepted;
  await new Promise((r) => (dialled.connecting ? dialled.once('connect', r) : r(undefined)));
  for (const s of [socket, dialled]) s.on('error', () => undefined);
  cleanup.push(() => {
    dialled.destroy();
    socket.destroy();
    server.close();
  });
  return [socket, dialled];
}

/** client ⇄ near (accepted by the "proxy") and far (dialled by it) ⇄ server. */
async function chain(): Promise<{ client: net.Socket; near: net.Socket; far: net.Socket; server: net.Socket }> {
  const [near, client] = await pair();
  const [server, far] = await pair();
  return { client, near, far, server };
}

/** Everything a socket receives until its end, as a hash and a length. */
function received(s: net.Socket): Promise<{ length: number; sha: string }> {
  const hash = createHash('sha256');
  let length = 0;
  return new Promise((resolve, reject) => {
    s.on('data', (d: Buffer) => {
      hash.update(d);
      length += d.length;
    });
    s.once('end', () => resolve({ length, sha: hash.digest('hex') }));
    s.once('close', () => reject(new Error('closed before its end')));
  });
}

/** Writes `total` bytes of a pattern seeded by `seed` in 64 KiB pieces, honouring backpressure; returns their hash. */
async function send(s: net.Socket, total: number, seed: number, end = true): Promise<string> {
  const hash = createHash('sha256');
  const piece = Buffer.alloc(64 * 1024);
  for (let sent = 0; sent < total; sent += piece.length) {
    const n = Math.min(piece.length, total - sent);
    for (let i = 0; i < n; i++) piece[i] = (sent + i) * seed;
    const chunk = Buffer.from(piece.subarray(0, n));
    hash.update(chunk);
    if (!s.write(chunk)) await new Promise((r) => s.once('drain', r));
  }
  if (end) s.end();
  return hash.digest('hex');
}

const MiB = 1024 * 1024;

describe('spliceSockets', () => {
  it.each([
    ['spliced', false],
    ['copied on the relay thread', true],
  ])('relays 16 MiB each way at once (%s), intact; each end passes as a half-close; counted at the end', async (_how, copy) => {
    const { client, near, far, server } = await chain();
    const relay = spliceSockets(near, far, { copy })!;
    expect(relay).toBeDefined();
    const atServer = received(server);
    const atClient = received(client);
    const [up, down] = await Promise.all([send(client, 16 * MiB, 7), send(server, 16 * MiB + 5, 13)]);
    expect(await atServer).toEqual({ length: 16 * MiB, sha: up });
    expect(await atClient).toEqual({ length: 16 * MiB + 5, sha: down });
    const outcome = await relay;
    expect(outcome).toEqual<SpliceOutcome>({ aToB: 16 * MiB, bToA: 16 * MiB + 5, error: undefined, cancelled: false });
    expect(socketBytes(near)).toEqual({ read: 16 * MiB, written: 16 * MiB + 5 });
    expect(socketBytes(far)).toEqual({ read: 16 * MiB + 5, written: 16 * MiB });
  });

  it('one side ends, the other keeps sending until it ends too', async () => {
    const { client, near, far, server } = await chain();
    const relay = spliceSockets(near, far)!;
    const atServer = received(server);
    const atClient = received(client);
    client.end('request');
    expect((await atServer).length).toBe(7);
    // The client's FIN reached the server; the server still answers, and only then ends.
    const reply = await send(server, 3 * MiB, 3);
    expect(await atClient).toEqual({ length: 3 * MiB, sha: reply });
    expect(await relay).toMatchObject({ aToB: 7, bToA: 3 * MiB, cancelled: false });
  });

  it('sends first what Node had read before the relay started, in order', async () => {
    const { client, near, far, server } = await chain();
    const first = new Promise((r) => near.once('data', (d) => (near.pause(), near.unshift(d), r(d))));
    client.write('before-');
    await first;
    const relay = spliceSockets(near, far)!;
    const atServer = received(server);
    client.end('after');
    const got: Buffer[] = [];
    server.on('data', (d: Buffer) => got.push(d));
    await atServer;
    expect(Buffer.concat(got).toString()).toBe('before-after');
    server.end();
    // Node wrote the 7 bytes it held; the kernel moved the rest.
    expect(await relay).toMatchObject({ aToB: 5, bToA: 0 });
    expect(socketBytes(far).written).toBe(12);
  });

  it('a destroyed socket cancels the relay; the other side sees the connection end', async () => {
    const { client, near, far, server } = await chain();
    const relay = spliceSockets(near, far)!;
    const serverEnded = new Promise((r) => server.once('end', r));
    void send(client, 64 * MiB, 5, false).catch(() => undefined);
    await new Promise<void>((resolve) => server.once('data', () => resolve()));
    near.destroy();
    expect((await relay).cancelled).toBe(true);
    far.destroy();
    await serverEnded;
    expect(socketBytes(near).read).toBeGreaterThan(0);
  });

  it('a reset fails the relay with the error the kernel gave', async () => {
    const { client, near, far, server } = await chain();
    const relay = spliceSockets(near, far)!;
    client.write('x');
    await new Promise((r) => server.once('data', r));
    server.resetAndDestroy();
    // The reset reaches the relay when it next touches the far socket.
    client.write('y');
    const outcome = await relay;
    expect(outcome.error?.code).toMatch(/^(ECONNRESET|EPIPE)$/);
    expect(outcome.cancelled).toBe(false);
  });

  it('declines what it cannot splice (a socket without an fd): the caller pipes instead', async () => {
    const [near] = await pair();
    expect(spliceSockets(near, new net.Socket())).toBeUndefined();
    expect(near.isPaused()).toBe(false);
  });
});
