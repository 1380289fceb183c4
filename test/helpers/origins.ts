import { createHash } from 'node:crypto';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Socket, type Server as TcpServer } from 'node:net';

export interface Running<T> {
  server: T;
  port: number;
  close(): Promise<void>;
}

const closer = (server: Server | TcpServer) => () =>
  new Promise<void>((resolve) => {
    if ('closeAllConnections' in server) server.closeAllConnections();
    server.close(() => resolve());
  });

/** An HTTP origin: /events streams `count` SSE events `everyMs` apart, then ends. */
export async function startEventsOrigin(count = 5, everyMs = 300): Promise<Running<Server>> {
  const server = createHttpServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    let n = 0;
    const timer = setInterval(() => {
      res.write(`data: event ${n}\n\n`);
      if (++n === count) {
        clearInterval(timer);
        res.end();
      }
    }, everyMs);
    res.on('close', () => clearInterval(timer));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port, close: closer(server) };
}

/** An SSH-like TCP origin: sends a banner line, then echoes every byte back. */
export async function startBannerEchoServer(banner = 'SSH-2.0-OxyTest_1.0\r\n'): Promise<Running<TcpServer>> {
  const server = createTcpServer((socket) => {
    socket.write(banner);
    socket.pipe(socket);
    socket.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port, close: closer(server) };
}

/**
 * A client that sent a request for a `total`-byte answer and paused: waits until the origin's
 * `written()` count stops growing (backpressure reached it), then reads the whole answer.
 * Returns where the origin stood while held, the answer's head and its body's length and SHA-256.
 */
export async function holdThenRead(
  client: Socket,
  written: () => number,
  total: number,
): Promise<{ heldAt: number; held: boolean; head: string; bytes: number; sha256: string }> {
  client.pause();
  let last = -1;
  for (let i = 0; i < 40 && written() !== last; i++) {
    last = written();
    await new Promise((r) => setTimeout(r, 500));
  }
  const heldAt = written();
  const got = createHash('sha256');
  let head = Buffer.alloc(0);
  let bytes = 0;
  await new Promise<void>((resolve, reject) => {
    client.on('data', (c: Buffer) => {
      if (head.indexOf('\r\n\r\n') < 0) {
        head = Buffer.concat([head, c]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        c = head.subarray(end + 4);
        head = head.subarray(0, end + 4);
      }
      bytes += c.length;
      got.update(c);
      if (bytes >= total) resolve();
    });
    client.on('close', () => reject(new Error(`closed after ${bytes} bytes`)));
    client.resume();
  });
  return { heldAt, held: heldAt === last, head: head.toString('latin1'), bytes, sha256: got.digest('hex') };
}
