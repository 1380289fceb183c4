/**
 * Shared pieces of the hook tests: curl as the real client, a loopback origin that echoes
 * what it received, an in-process edge with the CONNECT proxy and a hooks module (plus,
 * for the public-hostname on-ramp, its HTTP listener and a real connector process), and a
 * log sink to read the edge's lines.
 */
import { spawn } from 'node:child_process';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { WebSocketServer } from 'ws';
import { oxyOk, tempHome } from '../../helpers/cli.js';
import { startConnector, type OxyProcess } from '../../helpers/processes.js';
import { Store } from '../../../src/store/index.js';
import { runEdge } from '../../../src/engine/edge/run.js';
import type { EdgeServer } from '../../../src/engine/edge/server.js';
import { createLogger, type Logger } from '../../../src/engine/observe/log.js';
import { HookRunner, HookTrace, loadHooks, validateHooks, type Hooks } from '../../../src/engine/hooks/index.js';

export const EXAMPLES = fileURLToPath(new URL('../../../examples/', import.meta.url));

export interface CurlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs curl with a 10 s limit; never throws on a curl failure (its exit code is in the result).
 * `netns`: inside that network namespace (`ip netns exec`). `onData` sees stdout as it arrives.
 */
export function curl(args: string[], o: { netns?: string; onData?: (chunk: string) => void } = {}): Promise<CurlResult> {
  return new Promise((resolve, reject) => {
    const argv = ['--silent', '--show-error', '--max-time', '10', ...args];
    const child = o.netns
      ? spawn('ip', ['netns', 'exec', o.netns, 'curl', ...argv], { stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn('curl', argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => {
      stdout += d;
      o.onData?.(d);
    });
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Response headers curl -v printed for the proxy's CONNECT answer and the origin's (`< Name: value`). */
export const receivedHeaders = (stderr: string): string[] =>
  stderr
    .split(/\r?\n/)
    .filter((l) => l.startsWith('< '))
    .map((l) => l.slice(2));

export interface Origin {
  server: Server;
  port: number;
  /** Requests seen, in order. */
  seen: { method: string; url: string; headers: Record<string, string | string[] | undefined>; body: string }[];
  close(): Promise<void>;
}

/**
 * A loopback HTTP origin answering JSON `{ method, url, headers, body }` of each request;
 * `/chunks` streams four lines 150 ms apart instead, and `/ws` is a WebSocket echo (its
 * upgrade request is recorded too).
 */
export async function startOrigin(): Promise<Origin> {
  const seen: Origin['seen'] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (d) => (body += d));
    req.on('end', () => {
      const entry = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body };
      seen.push(entry);
      if (req.url === '/chunks') return void streamChunks(res);
      const text = JSON.stringify(entry);
      res.writeHead(200, { 'content-type': 'application/json', 'x-origin': 'yes', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    });
  });
  const wss = new WebSocketServer({ server, path: '/ws' });
  wss.on('connection', (ws, req) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: '' });
    ws.on('message', (m, binary) => ws.send(m, { binary }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    server,
    port: (server.address() as AddressInfo).port,
    seen,
    close: () =>
      new Promise<void>((r) => {
        for (const ws of wss.clients) ws.terminate();
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

function streamChunks(res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/plain' });
  let n = 0;
  const timer = setInterval(() => {
    res.write(`chunk ${n}\n`);
    if (++n === 4) {
      clearInterval(timer);
      res.end();
    }
  }, 150);
  res.on('close', () => clearInterval(timer));
}

/** A logger whose text lines are collected (cloudflared-style, as `edge run` prints them). */
export function logSink(): { log: Logger; lines: string[]; text: () => string } {
  const lines: string[] = [];
  const log = createLogger({ level: 'info', stream: { write: (s: string) => lines.push(s) } });
  return { log, lines, text: () => lines.join('') };
}

export interface ProxyEdge {
  edge: EdgeServer;
  home: string;
  store: Store;
  proxyPort: number;
  proxy: string;
  runner: HookRunner;
  trace: HookTrace;
  logs: ReturnType<typeof logSink>;
  close(): Promise<void>;
}

export interface EdgeListeners {
  /** Listen addresses (default: the CONNECT proxy on loopback, no public HTTP listener). */
  proxyListen?: string;
  httpListen?: string;
  proxyProtocol?: boolean;
  /** The proxy's allow list; default: the test ranges (loopback, 198.18.0.0/15, 2001:db8::/32). */
  proxyAllow?: string[];
}

/** Where test traffic may go: the proxy denies everything else by default. */
export const TEST_ALLOW = ['127.0.0.0/8', '::1', '198.18.0.0/15', '2001:db8::/32'];

/**
 * An in-process edge with the CONNECT proxy on loopback and `hooks` (an examples/ file
 * name, a hooks object, or none). Tracing is on so tests can read the hook order.
 */
export async function startProxyEdge(hooks?: string | Hooks<any>, home?: string, listeners: EdgeListeners = {}): Promise<ProxyEdge> {
  const temp = home ? undefined : tempHome();
  const dir = home ?? temp!.home;
  const logs = logSink();
  const trace = new HookTrace();
  const runner =
    typeof hooks === 'string'
      ? await loadHooks(`${EXAMPLES}${hooks}`, { home: dir, location: 'test', log: logs.log, trace })
      : new HookRunner(validateHooks('test', hooks), { log: logs.log, trace });
  const store = await Store.open(dir);
  const edge = await runEdge({
    home: dir,
    store,
    log: logs.log,
    tunnelListen: '127.0.0.1:0',
    location: 'test',
    proxyListen: '127.0.0.1:0',
    proxyAllow: TEST_ALLOW,
    ...listeners,
    hooks: runner,
  });
  const proxyPort = edge.proxyAddress!.port;
  return {
    edge,
    home: dir,
    store,
    proxyPort,
    proxy: `http://127.0.0.1:${proxyPort}`,
    runner,
    trace,
    logs,
    async close() {
      await edge.stop();
      await store.close();
      temp?.cleanup();
    },
  };
}

export interface TunnelEdge extends ProxyEdge {
  /** The public HTTP listener's port and base URL; requests name `hostname` in their Host. */
  httpPort: number;
  http: string;
  hostname: string;
  connector: OxyProcess;
}

/**
 * startProxyEdge() plus the public HTTP listener and a tunnel whose connector (a real
 * `oxyctl tunnel run` process, one HA connection) serves `hostname` from a loopback origin.
 */
export async function startTunnelEdge(
  hooks: Hooks<any>,
  originPort: number,
  listeners: EdgeListeners = {},
  hostname = 'app.example.test',
): Promise<TunnelEdge> {
  const { home, cleanup } = tempHome();
  await oxyOk(home, ['tunnel', 'create', 'web']);
  await oxyOk(home, ['tunnel', 'route', 'dns', 'web', hostname]);
  const p = await startProxyEdge(hooks, home, { httpListen: '127.0.0.1:0', ...listeners });
  const tunnelPort = p.edge.tunnelAddresses.find((l) => l.protocol === 'http2')!.address.port;
  const { connector } = await startConnector(home, tunnelPort, ['--url', `http://127.0.0.1:${originPort}`, '--ha-connections', '1', 'web'], 1);
  const httpPort = p.edge.httpAddress!.port;
  return {
    ...p,
    httpPort,
    http: `http://127.0.0.1:${httpPort}`,
    hostname,
    connector,
    async close() {
      await connector.stop();
      await p.close();
      cleanup();
    },
  };
}
