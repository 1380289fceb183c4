#!/usr/bin/env node
/**
 * Servers the benchmarks run in a process of their own (so client and server do not share
 * an event loop). Usage: node bench/lib/servers.js http|tcp|tls [certDir]
 * Prints "ready PORT" when listening.
 *   http: GET /bytes/N streams N bytes; POST /sink reads the body and answers its length;
 *         GET /small answers 64 bytes; GET /idle holds the response open.
 *   tcp, tls: raw sink/source; the client's first 9 bytes say "get N" / "put N".
 */
import { createServer } from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';

const CHUNK = Buffer.alloc(256 * 1024, 7);
const kind = process.argv[2];

function source(n, write, end) {
  let left = n;
  const pump = () => {
    while (left > 0) {
      const piece = left >= CHUNK.length ? CHUNK : CHUNK.subarray(0, left);
      left -= piece.length;
      if (!write(piece)) return;
    }
    end();
  };
  return pump;
}

if (kind === 'http') {
  const server = createServer((req, res) => {
    const m = /^\/bytes\/(\d+)/.exec(req.url);
    if (m) {
      const n = Number(m[1]);
      res.writeHead(200, { 'content-length': n, 'content-type': 'application/octet-stream' });
      const pump = source(
        n,
        (b) => res.write(b),
        () => res.end(),
      );
      res.on('drain', pump);
      pump();
    } else if (req.url === '/sink') {
      let n = 0;
      req.on('data', (d) => (n += d.length));
      req.on('end', () => res.end(String(n)));
    } else if (req.url === '/idle') {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(': open\n\n');
    } else {
      res.end('x'.repeat(64));
    }
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1', () => console.log(`ready ${server.address().port}`));
} else {
  const onSocket = (socket) => {
    socket.once('data', (head) => {
      const [op, count] = head.toString().trim().split(' ');
      const n = Number(count);
      if (op === 'get') {
        const pump = source(
          n,
          (b) => socket.write(b),
          () => socket.end(),
        );
        socket.on('drain', pump);
        pump();
      } else {
        let got = head.length - 20;
        socket.on('data', (d) => {
          got += d.length;
          if (got >= n) socket.end('done');
        });
      }
    });
  };
  const dir = process.argv[3];
  const server =
    kind === 'tls' ? tls.createServer({ key: readFileSync(`${dir}/key.pem`), cert: readFileSync(`${dir}/cert.pem`) }, onSocket) : net.createServer(onSocket);
  server.listen(0, '127.0.0.1', () => console.log(`ready ${server.address().port}`));
}
