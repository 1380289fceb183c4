/**
 * Shared pieces of the hook tests: curl as the real client, a loopback origin that echoes
 * what it received, an in-process edge with the CONNECT proxy and a hooks module, and a
 * log sink to read the edge's lines.
 */
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { tempHome } from '../../helpers/cli.js';
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

/** Runs curl with a 10 s limit; never throws on a curl failure (its exit code is in the result). */
export function curl(args: string[]): Promise<CurlResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('curl', ['--silent', '--show-error', '--max-time', '10', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Response headers curl -v printed for the proxy's CONNECT answer and the origin's (`< Name: value`). */
export const receivedHeaders = (stderr: string): string[] => stderr.split(/\r?\n/).filter((l) => l.startsWith('< ')).map((l) => l.slice(2));

export interface Origin {
  server: Server;
  port: number;
  /** Requests seen, in order. */
  seen: { method: string; url: string; headers: Record<string, string | string[] | undefined>; body: string }[];
  close(): Promise<void>;
}

/** A loopback HTTP origin answering JSON `{ method, url, headers, body }` of each request. */
export async function startOrigin(): Promise<Origin> {
  const seen: Origin['seen'] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (d) => (body += d));
    req.on('end', () => {
      const entry = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body };
      seen.push(entry);
      const text = JSON.stringify(entry);
      res.writeHead(200, { 'content-type': 'application/json', 'x-origin': 'yes', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    server,
    port: (server.address() as AddressInfo).port,
    seen,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
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

/**
 * An in-process edge with the CONNECT proxy on loopback and `hooks` (an examples/ file
 * name, a hooks object, or none). Tracing is on so tests can read the hook order.
 */
export async function startProxyEdge(hooks?: string | Hooks<any>, home?: string): Promise<ProxyEdge> {
  const temp = home ? undefined : tempHome();
  const dir = home ?? temp!.home;
  const logs = logSink();
  const trace = new HookTrace();
  const runner =
    typeof hooks === 'string'
      ? await loadHooks(`${EXAMPLES}${hooks}`, { home: dir, location: 'test', log: logs.log, trace })
      : new HookRunner(validateHooks('test', hooks), { log: logs.log, trace });
  const store = Store.open(dir);
  const edge = await runEdge({ home: dir, store, log: logs.log, tunnelListen: '127.0.0.1:0', location: 'test', proxyListen: '127.0.0.1:0', hooks: runner });
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
      store.close();
      temp?.cleanup();
    },
  };
}
