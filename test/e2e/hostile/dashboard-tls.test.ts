// The dashboard over HTTPS (--dashboard-tls) had its own server apart from the HTTP
// listeners' factory: edge.yml http-timeouts did not reach it, and a client that stalled
// mid-handshake held its socket for Node's 120 s handshake timeout (measured). Now it is made by
// the same factory: a client that stops mid-handshake or mid-head, or sends no TLS at all, is
// closed within the headers timeout, and the dashboard serves on.
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { tempHome } from '../../helpers/cli.js';
import { OxyProcess, LOOPBACK_EDGE } from '../../helpers/processes.js';

let home: { home: string; cleanup: () => void };
let edge: OxyProcess;
let port: number;

beforeAll(async () => {
  home = tempHome();
  const config = join(home.home, 'edge.yml');
  writeFileSync(config, 'http-timeouts:\n  headers-ms: 1000\n');
  edge = new OxyProcess(home.home, [...LOOPBACK_EDGE, '--no-quic', '--config', config, '--dashboard-listen', '127.0.0.1:0', '--dashboard-tls']);
  port = Number((await edge.waitFor(/Dashboard ready .* url=https:\/\/127\.0\.0\.1:(\d+)\//))[1]);
});

afterAll(async () => {
  await edge?.stop('SIGKILL');
  home?.cleanup();
});

/** Resolves with how long the edge took to close `socket` (ms), or rejects after `limitMs`. */
const closedWithin = (socket: net.Socket, limitMs: number) =>
  new Promise<number>((resolve, reject) => {
    const start = Date.now();
    const limit = setTimeout(() => reject(new Error(`still open after ${limitMs} ms`)), limitMs);
    socket.on('error', () => undefined);
    socket.on('close', () => (clearTimeout(limit), resolve(Date.now() - start)));
    socket.resume();
  });

it('closes a client that stops mid-handshake, and one that stops mid-head, within the headers timeout', async () => {
  // The first bytes of a ClientHello record, never finished.
  const stalled = net.connect(port, '127.0.0.1', () => stalled.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x50])));
  // A finished handshake, then a head that never ends.
  const slow = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false }, () => slow.write('GET / HTTP/1.1\r\nHost: x\r\nX-A: '));
  // Garbage instead of TLS: the handshake fails.
  const garbage = net.connect(port, '127.0.0.1', () => garbage.write('GET / HTTP/1.1\r\n\r\n'));
  const times = await Promise.all([closedWithin(stalled, 10_000), closedWithin(slow, 10_000), closedWithin(garbage, 10_000)]);
  expect(times.every((ms) => ms < 10_000)).toBe(true);
  // Still serving: a login page over a fresh TLS connection.
  const res = await fetchOverTls('/');
  expect(res).toMatch(/^HTTP\/1\.1 200 /);
  expect(edge.child.exitCode).toBeNull();
});

function fetchOverTls(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false }, () =>
      s.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`),
    );
    let text = '';
    s.setEncoding('latin1').on('data', (d: string) => (text += d));
    s.on('error', reject);
    s.on('close', () => resolve(text));
  });
}
