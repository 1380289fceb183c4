import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer } from 'node:net';

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
