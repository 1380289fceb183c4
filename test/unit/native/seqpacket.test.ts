// SEQPACKET Unix sockets: boundaries, fd passing, peer close vs empty messages,
// listen/connect on paths and abstract names, backpressure.
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';

import { NativeError, SeqpacketServer, SeqpacketSocket, closeFd } from '../../../src/engine/native/index.js';
import { native } from '../../../src/engine/native/binding.js';

const dir = mkdtempSync(join(tmpdir(), 'oxy-seqpacket-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const open: { close(): void }[] = [];
afterEach(() => {
  for (const s of open.splice(0)) s.close();
});
function track<T extends { close(): void }>(s: T): T {
  open.push(s);
  return s;
}

interface Received {
  data: Buffer;
  fds: readonly number[];
}

/** Records messages and 'end' of a socket; `next(n)` waits for n more messages. */
function recorder(socket: SeqpacketSocket) {
  const messages: Received[] = [];
  let ended = false;
  let waiters: (() => void)[] = [];
  const wake = () => {
    for (const w of waiters.splice(0)) w();
  };
  socket.on('message', (data, fds) => {
    messages.push({ data: Buffer.from(data), fds });
    wake();
  });
  socket.on('end', () => {
    ended = true;
    wake();
  });
  const until = (done: () => boolean, what: string, ms = 3000) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what} (${messages.length} messages, ended=${ended})`)), ms);
      const check = () => {
        if (done()) {
          clearTimeout(timer);
          resolve();
        } else {
          waiters.push(check);
        }
      };
      check();
    });
  return {
    messages,
    get ended() {
      return ended;
    },
    count: (n: number) => until(() => messages.length >= n, `${n} messages`),
    end: () => until(() => ended, 'end'),
    reset: () => {
      waiters = [];
    },
  };
}

describe('SeqpacketSocket', () => {
  it('keeps message boundaries (1 byte, 1000 bytes, 100 KiB, many small)', async () => {
    const [a, b] = SeqpacketSocket.pair().map(track) as [SeqpacketSocket, SeqpacketSocket];
    const rec = recorder(b);
    const sent = [Buffer.from('x'), randomBytes(1000), randomBytes(100 * 1024)];
    for (let i = 0; i < 200; i++) sent.push(Buffer.from(`m${i}`));
    for (const m of sent) a.send(m);
    await rec.count(sent.length);
    expect(rec.messages.map((m) => m.data)).toEqual(sent);
  });

  it('a zero-length message is a message, not end-of-stream; closing the peer is', async () => {
    const [a, b] = SeqpacketSocket.pair().map(track) as [SeqpacketSocket, SeqpacketSocket];
    const rec = recorder(b);
    a.send(Buffer.alloc(0));
    a.send(Buffer.from('after'));
    await rec.count(2);
    await new Promise((r) => setTimeout(r, 30));
    expect(rec.messages.map((m) => m.data.toString())).toEqual(['', 'after']);
    expect(rec.ended).toBe(false);
    expect(b.closed).toBe(false);

    // An empty message immediately followed by close: both are seen, in order.
    a.send(Buffer.alloc(0));
    a.close();
    await rec.end();
    expect(rec.messages.map((m) => m.data.toString())).toEqual(['', 'after', '']);
    expect(b.closed).toBe(true);
  });

  it('detects peer close while the peer still had our messages unread (ECONNRESET path)', async () => {
    const [a, b] = SeqpacketSocket.pair().map(track) as [SeqpacketSocket, SeqpacketSocket];
    b.pause();
    const rec = recorder(a);
    a.send(Buffer.from('never read'));
    b.send(Buffer.from('last words'));
    b.close();
    await rec.end();
    expect(rec.messages.map((m) => m.data.toString())).toEqual(['last words']);
  });

  it('end() half-closes: the peer gets end after every queued message', async () => {
    const [a, b] = SeqpacketSocket.pair().map(track) as [SeqpacketSocket, SeqpacketSocket];
    const rec = recorder(b);
    a.send(Buffer.from('one'));
    a.send(Buffer.from('two'));
    a.end();
    await rec.end();
    expect(rec.messages.map((m) => m.data.toString())).toEqual(['one', 'two']);
  });

  it("an 'end' listener can still answer a peer that half-closed with end()", async () => {
    const [a, b] = SeqpacketSocket.pair().map(track) as [SeqpacketSocket, SeqpacketSocket];
    const atA = recorder(a);
    b.on('end', () => b.send(Buffer.from('bye')));
    a.send(Buffer.from('question'));
    a.end();
    await atA.end();
    expect(atA.messages.map((m) => m.data.toString())).toEqual(['bye']);
    expect(b.closed).toBe(true);
  });

  it('passes a file fd and a socket fd with SCM_RIGHTS, and both work on the other side', async () => {
    const [a, b] = SeqpacketSocket.pair().map(track) as [SeqpacketSocket, SeqpacketSocket];
    const rec = recorder(b);
    const file = join(dir, 'passed.txt');
    writeFileSync(file, 'contents of the passed file');
    const fileFd = openSync(file, 'r');
    const [keep, give] = SeqpacketSocket.pair().map(track) as [SeqpacketSocket, SeqpacketSocket];

    a.send(Buffer.from('here'), [fileFd, give.fd]);
    closeSync(fileFd); // the receiver holds its own copy now
    give.close();
    await rec.count(1);
    const [{ data, fds }] = rec.messages as [Received];
    expect(data.toString()).toBe('here');
    expect(fds).toHaveLength(2);

    const buf = Buffer.alloc(64);
    const n = readSync(fds[0]!, buf, 0, 64, 0);
    expect(buf.subarray(0, n).toString()).toBe('contents of the passed file');
    closeFd(fds[0]!);

    const received = track(SeqpacketSocket.fromFd(fds[1]!));
    const keepRec = recorder(keep);
    received.send(Buffer.from('through the passed socket'));
    await keepRec.count(1);
    expect(keepRec.messages[0]!.data.toString()).toBe('through the passed socket');
  });

  it('queues when the peer does not read, then drains in order (queued data is copied)', async () => {
    const [a, b] = SeqpacketSocket.pair({ sendBufferSize: 64 * 1024 }).map(track) as [SeqpacketSocket, SeqpacketSocket];
    b.pause();
    const rec = recorder(b);
    const reused = randomBytes(16 * 1024);
    let queuedAt = -1;
    for (let i = 0; i < 64; i++) {
      reused.writeUInt32BE(i, 0); // one buffer for every message: send must not keep it
      if (!a.send(reused) && queuedAt < 0) queuedAt = i;
    }
    expect(queuedAt).toBeGreaterThan(0);
    expect(a.queuedMessages).toBeGreaterThan(0);
    const drained = new Promise<void>((resolve) => a.once('drain', resolve));
    b.resume();
    await drained;
    await rec.count(64);
    expect(rec.messages.map((m) => m.data.readUInt32BE(0))).toEqual([...Array(64).keys()]);
  });

  it('refuses non-SEQPACKET fds and reports errors by errno name', () => {
    const fd = openSync(join(dir, 'plain'), 'w');
    expect(() => SeqpacketSocket.fromFd(fd)).toThrow(expect.objectContaining({ code: 'ENOTSOCK' }));
    // fromFd took ownership and closed it.
    expect(() => closeSync(fd)).toThrow();

    const [a, b] = SeqpacketSocket.pair().map(track) as [SeqpacketSocket, SeqpacketSocket];
    b.close();
    let err: unknown;
    try {
      a.send(Buffer.from('x'));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NativeError);
    expect(err).toMatchObject({ code: 'EPIPE', syscall: 'sendmsg' });
  });
});

describe('SeqpacketServer', () => {
  it('reuses a socket file nobody listens on (left by a crashed process); refuses a path that is not a socket', async () => {
    const where = join(dir, `stale-${randomBytes(4).toString('hex')}.sock`);
    closeFd(native().seqpacketListen(where, 1)); // a crash: the fd is gone, the file stays
    expect(existsSync(where)).toBe(true);
    const server = track(SeqpacketServer.listen(where));
    const accepted = new Promise<SeqpacketSocket>((resolve) => server.once('connection', resolve));
    track(SeqpacketSocket.connect(where));
    track(await accepted);

    const file = join(dir, `file-${randomBytes(4).toString('hex')}`);
    writeFileSync(file, 'data');
    expect(() => SeqpacketServer.listen(file)).toThrow(
      expect.objectContaining({ code: 'OXY_ERR_LISTEN_IN_USE', message: expect.stringContaining('is not a socket') }),
    );
    expect(existsSync(file)).toBe(true);
  });

  for (const [kind, path] of [
    ['filesystem path', () => join(dir, `srv-${randomBytes(4).toString('hex')}.sock`)],
    ['abstract name', () => `\0oxy-test-${process.pid}-${randomBytes(4).toString('hex')}`],
  ] as const) {
    it(`listens on a ${kind}, accepts, and talks both ways`, async () => {
      const where = path();
      const server = track(SeqpacketServer.listen(where));
      const accepted = new Promise<SeqpacketSocket>((resolve) => server.once('connection', resolve));
      const client = track(SeqpacketSocket.connect(where));
      const peer = track(await accepted);
      const atServer = recorder(peer);
      const atClient = recorder(client);
      client.send(Buffer.from('ping'));
      await atServer.count(1);
      peer.send(Buffer.from('pong'));
      await atClient.count(1);
      expect(atServer.messages[0]!.data.toString()).toBe('ping');
      expect(atClient.messages[0]!.data.toString()).toBe('pong');

      // A live listener is never taken over: a path is refused by name, an abstract name by the kernel.
      if (where.startsWith('\0')) expect(() => SeqpacketServer.listen(where)).toThrow(expect.objectContaining({ code: 'EADDRINUSE', syscall: 'bind' }));
      else
        expect(() => SeqpacketServer.listen(where)).toThrow(
          expect.objectContaining({ code: 'OXY_ERR_LISTEN_IN_USE', message: expect.stringContaining('Another process is listening on') }),
        );
      client.close();
      await atServer.end();
      server.close();
      if (!where.startsWith('\0')) expect(existsSync(where)).toBe(false);
    });
  }

  it('connect to nothing fails with ENOENT / ECONNREFUSED', () => {
    expect(() => SeqpacketSocket.connect(join(dir, 'nobody.sock'))).toThrow(expect.objectContaining({ code: 'ENOENT', syscall: 'connect' }));
    expect(() => SeqpacketSocket.connect(`\0oxy-nobody-${process.pid}`)).toThrow(expect.objectContaining({ code: 'ECONNREFUSED' }));
  });
});
