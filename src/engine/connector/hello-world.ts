/**
 * The hello-world origin (`--hello-world`, `service: hello_world`): a local HTTP server the
 * connector starts and proxies to like any other origin, as cloudflared does. It serves a
 * page describing the request, `/ws` (WebSocket echo) and `/sse` (a tick every second).
 */
import type { IncomingMessage, Server } from 'node:http';
import { createHttpServer } from '../util/http-server.js';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';

export interface HelloWorld {
  url: string;
  close(): Promise<void>;
}

const page = (req: IncomingMessage) => `<!doctype html>
<html><head><title>oxyctl hello world</title></head>
<body>
<h1>Congrats! You created a tunnel!</h1>
<p>oxyctl proxied this request through the edge and your tunnel to a local origin.</p>
<pre>${escapeHtml(
  `${req.method} ${req.url} HTTP/${req.httpVersion}\n${Object.entries(req.headers)
    .map(([k, v]) => `${k}: ${v}`)
    .join('\n')}`,
)}</pre>
</body></html>
`;

const escapeHtml = (s: string) => s.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);

export async function startHelloWorld(): Promise<HelloWorld> {
  const timers = new Set<NodeJS.Timeout>();
  const server: Server = createHttpServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/sse') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      let n = 0;
      const tick = () => res.write(`data: tick ${n++} ${new Date().toISOString()}\n\n`);
      tick();
      const timer = setInterval(tick, 1000);
      timers.add(timer);
      res.on('close', () => {
        clearInterval(timer);
        timers.delete(timer);
      });
      return;
    }
    if (req.method === 'POST' || req.method === 'PUT') {
      // Echo the body so uploads can be checked end to end.
      res.writeHead(200, { 'content-type': req.headers['content-type'] ?? 'application/octet-stream' });
      req.pipe(res);
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(page(req));
  });
  const wss = new WebSocketServer({ server, path: '/ws' });
  wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      for (const t of timers) clearInterval(t);
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
