// A bulk CONNECT tunnel to a direct destination (`edge run --proxy-listen`, no hooks): it
// starts on Node's pipes and moves to the addon's relay thread after SPLICE_AFTER_BYTES (on
// loopback, as here, the relay copies instead of splicing: native/splice.ts SpliceOptions.copy).
// The client sees every byte both ways in order, its end of stream passes to the origin and
// the origin's back, and the CONNECT log line counts what the relay moved.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempHome } from '../../helpers/cli.js';
import { LOOPBACK_EDGE, OxyProcess } from '../../helpers/processes.js';

let home: { home: string; cleanup: () => void };
let echo: net.Server;
let edge: OxyProcess;
let proxyPort: number;

beforeAll(async () => {
  home = tempHome();
  // Echoes everything and ends when the client has ended (half-close both ways).
  echo = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  // One process: the relay thread is looked for in it.
  edge = new OxyProcess(home.home, [...LOOPBACK_EDGE, '--workers', '1', '--proxy-listen', '127.0.0.1:0', '--proxy-allow', '127.0.0.1/32']);
  proxyPort = Number((await edge.waitFor(/CONNECT proxy listener ready address=127\.0\.0\.1:(\d+)/))[1]);
});
afterAll(async () => {
  await edge?.stop('SIGKILL');
  echo?.close();
  home?.cleanup();
});

/** Whether the process runs the addon's relay thread (named oxy-relay): it starts with the first relay. */
const relayThread = (pid: number): boolean =>
  readdirSync(`/proc/${pid}/task`).some((task) => {
    try {
      return readFileSync(`/proc/${pid}/task/${task}/comm`, 'utf8').trim() === 'oxy-relay';
    } catch {
      return false;
    }
  });

/** Opens a CONNECT tunnel to `port`; resolves with the socket once the 200 head was read. */
async function connectTunnel(port: number): Promise<net.Socket> {
  const s = net.connect({ port: proxyPort, host: '127.0.0.1', allowHalfOpen: true });
  s.on('error', () => undefined);
  await new Promise((r) => s.once('connect', r));
  s.write(`CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
  let head = '';
  await new Promise<void>((resolve, reject) => {
    const onData = (d: Buffer): void => {
      head += d.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      s.off('data', onData);
      s.pause();
      if (!head.startsWith('HTTP/1.1 200')) reject(new Error(`proxy answered ${head.split('\r\n')[0]}`));
      const rest = Buffer.from(head.slice(end + 4), 'latin1');
      if (rest.length) s.unshift(rest);
      resolve();
    };
    s.on('data', onData);
  });
  return s;
}

describe('a bulk CONNECT tunnel in the kernel', () => {
  it('carries 24 MiB each way intact, passes both ends of stream, and logs the bytes', async () => {
    const s = await connectTunnel((echo.address() as net.AddressInfo).port);
    const total = 24 * 1024 * 1024;
    const sent = createHash('sha256');
    const got = createHash('sha256');
    let received = 0;
    const back = new Promise<void>((resolve, reject) => {
      s.on('data', (d: Buffer) => {
        got.update(d);
        received += d.length;
      });
      s.once('end', () => resolve());
      s.once('close', () => reject(new Error(`closed before its end after ${received} bytes`)));
    });
    s.resume();
    expect(relayThread(edge.child.pid!)).toBe(false);
    let relayed = false;
    const piece = Buffer.alloc(64 * 1024);
    for (let off = 0; off < total; off += piece.length) {
      // Well past the hand-over: the edge runs the relay thread.
      if (off === total / 2) relayed = relayThread(edge.child.pid!);
      for (let i = 0; i < piece.length; i += 4) piece.writeUInt32LE((off + i) >>> 0, i);
      sent.update(piece);
      if (!s.write(Buffer.from(piece))) await new Promise((r) => s.once('drain', r));
    }
    s.end();
    await back;
    expect(received).toBe(total);
    expect(relayed).toBe(true);
    expect(got.digest('hex')).toBe(sent.digest('hex'));
    s.destroy();
    const line = await edge.waitFor(/INF CONNECT .*via=direct bytesIn=(\d+) bytesOut=(\d+)/);
    // In: the 24 MiB (the CONNECT head was read before the count started); out: the echo (plus the 200 head).
    expect(Number(line[1])).toBe(total);
    expect(Number(line[2])).toBeGreaterThanOrEqual(total);
  });
});
