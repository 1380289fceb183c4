// Raw-socket probes for the hostile-input suites: bytes in, whatever comes back, then close.
import net from 'node:net';
import { request } from 'undici';

/**
 * Sends `chunks` (one write each, `gapMs` apart) to 127.0.0.1:`port`, then closes the socket
 * (abruptly with `reset`) after `holdMs`; resolves with every byte the server sent.
 */
export function probe(port: number, chunks: (string | Buffer)[], o: { holdMs?: number; gapMs?: number; reset?: boolean } = {}): Promise<Buffer> {
  return new Promise((resolve) => {
    const got: Buffer[] = [];
    const s = net.connect(port, '127.0.0.1');
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      if (o.reset) s.resetAndDestroy();
      else s.destroy();
      resolve(Buffer.concat(got));
    };
    s.on('data', (d: Buffer) => got.push(d));
    s.on('error', finish);
    s.on('close', finish);
    s.on('connect', async () => {
      for (const c of chunks) {
        if (s.destroyed) break;
        s.write(c);
        if (o.gapMs) await new Promise((r) => setTimeout(r, o.gapMs));
      }
      setTimeout(finish, o.holdMs ?? 50);
    });
  });
}

/** One GET over a fresh connection: status and body (the good client of the hostile suites). */
export async function goodGet(port: number, host: string, path = '/'): Promise<{ status: number; body: string }> {
  const res = await request(`http://127.0.0.1:${port}${path}`, { headers: { host }, headersTimeout: 5000, bodyTimeout: 5000, reset: true });
  return { status: res.statusCode, body: await res.body.text() };
}

/** The classic probes that crashed or confused HTTP servers: each is followed by a close. */
export const crashProbes = (host: string): string[][] => [
  // Issue 12 item 1: a bad chunk size, then the client closes.
  [`POST /x HTTP/1.1\r\nHost: ${host}\r\nTransfer-Encoding: chunked\r\n\r\nZZZZ\r\n`],
  // A body cut short by the client.
  [`POST /x HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 1000\r\n\r\nabc`],
  [`POST /x HTTP/1.1\r\nHost: ${host}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab`],
  // A Content-Length an http1 stream's HEAD record cannot carry (a u32: it once threw in the edge).
  [`POST /x HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 999999999999999\r\n\r\nabc`],
  // A chunked body that turns odd after its first chunk went on, then one cut short.
  [`POST /x HTTP/1.1\r\nHost: ${host}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n`, 'zz\r\n'],
  [`POST /x HTTP/1.1\r\nHost: ${host}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: `],
  // A head cut short.
  [`GET / HTTP/1.1\r\nHost: ${host}\r\nX-A: `],
  // Two requests pipelined, the second broken.
  [`GET / HTTP/1.1\r\nHost: ${host}\r\n\r\nPOST / HTTP/1.1\r\nHost: ${host}\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n`],
];
