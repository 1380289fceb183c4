/**
 * The quick tunnel (`oxyctl tunnel --hello-world` / `--url URL`): an edge and a connector
 * in one process, around an ephemeral tunnel in a throwaway data directory, so one command
 * gives a URL that reaches the origin. Everything is removed when it stops.
 *
 * The connector runs on a worker thread of its own (quick-connector-worker.ts), so edge and
 * connector each take a core as `ssh -R`'s two processes do: 1 GiB through the quick tunnel
 * 0.82-0.98x `ssh -R` down against 0.54-0.67x on one thread, at less CPU per MB (decisions.md,
 * "HTTP/2 bulk"). It opens the same store, logs through this thread's logger and stops when
 * told. OXY_QUICK_WORKER=0 (or a build without the worker's file) keeps it on this thread.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { parentPort, Worker, workerData } from 'node:worker_threads';
import { isErrorCode, OxyError } from '../core/errors.js';
import { packageRoot } from '../core/paths.js';
import { createTunnel } from '../core/tunnels.js';
import { STORE_FILE, Store } from '../store/index.js';
import { startConnector, type ConnectorOptions } from './connector/start.js';
import { runEdge } from './edge/run.js';
import type { EdgeServer } from './edge/server.js';
import { createLogger, type Logger } from './observe/log.js';
import { parseConfig, type ConnectorConfig } from './connector/config.js';
import { tuneGcForDataPlane } from './util/gc.js';

export interface QuickTunnel {
  url: string;
  edge: EdgeServer;
  /** Whether the connector runs on a worker thread. */
  connectorThread: boolean;
  stop(graceMs?: number): Promise<void>;
}

interface QuickConnectorStart {
  home: string;
  storeUrl: string;
  tunnelId: string;
  version: string;
  options: ConnectorOptions;
  /** The config file's raw keys and path (parsed again on the connector's thread). */
  config?: { raw: ConnectorConfig['raw']; source: string };
  logLevel: string;
}

/** Messages from the connector's thread. */
type FromConnector = { type: 'registered' } | { type: 'failed'; code?: string; message: string } | { type: 'log'; line: string } | { type: 'stopped' };

interface RunningConnector {
  stop(graceMs?: number): Promise<void>;
}

export async function startQuickTunnel(o: {
  log: Logger;
  httpListen: string;
  version: string;
  options: Omit<ConnectorOptions, 'edge' | 'edgeCa'>;
  config?: ConnectorConfig;
}): Promise<QuickTunnel> {
  tuneGcForDataPlane(); // process-wide: the connector's thread too
  const home = mkdtempSync(join(tmpdir(), 'oxyctl-quick-'));
  // Always a throwaway SQLite store of its own, whatever OXY_STORE says.
  const storeUrl = `sqlite:${join(home, STORE_FILE)}`;
  const store = await Store.open({ home, url: storeUrl });
  let edge: EdgeServer | undefined;
  try {
    const { tunnel } = await createTunnel(store, { name: `quick-${randomBytes(4).toString('hex')}` });
    edge = await runEdge({ home, store, log: o.log, tunnelListen: '127.0.0.1:0', httpListen: o.httpListen, location: 'quick', defaultTunnel: tunnel.id });
    const tunnelAddr = edge.tunnelAddresses[0].address;
    const start: QuickConnectorStart = {
      home,
      storeUrl,
      tunnelId: tunnel.id,
      version: o.version,
      options: { ...o.options, edge: `127.0.0.1:${tunnelAddr.port}` },
      config: o.config && { raw: o.config.raw, source: o.config.source },
      logLevel: o.log.level,
    };
    const entry = workerEntry();
    const connector = entry ? await startOnThread(entry, start, o.log) : await startHere(start, o.log, store, o.config);
    const http = edge.httpAddress!;
    const running = edge;
    return {
      url: `http://${http.address.includes(':') ? `[${http.address}]` : http.address}:${http.port}`,
      edge: running,
      connectorThread: entry !== undefined,
      stop: async (graceMs) => {
        await connector.stop(graceMs);
        await running.stop();
        await store.close();
        rmSync(home, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await edge?.stop();
    await store.close();
    rmSync(home, { recursive: true, force: true });
    throw err;
  }
}

/** The worker's file next to this module's build (dist/ or the bundled lib/); undefined to run here. */
function workerEntry(): string | undefined {
  if (process.env.OXY_QUICK_WORKER === '0') return undefined;
  const here = fileURLToPath(import.meta.url);
  const build = here.includes('/lib/') ? 'lib' : here.includes('/dist/') ? 'dist' : undefined;
  const entry = build && join(packageRoot(), build, 'engine/quick-connector-worker.js');
  return entry && existsSync(entry) ? entry : undefined;
}

/** Its rules and warp-routing only: the tunnel is the ephemeral one, never the file's. */
const quickConfig = (config: ConnectorConfig | undefined): ConnectorConfig | undefined =>
  config && { ...config, tunnel: undefined, credentialsFile: undefined };

async function startHere(s: QuickConnectorStart, log: Logger, store: Store, config?: ConnectorConfig): Promise<RunningConnector> {
  const started = await startConnector(log, {
    home: s.home,
    tunnelRef: s.tunnelId,
    store: async () => store,
    version: s.version,
    config: quickConfig(config),
    options: s.options,
  });
  await new Promise<void>((resolve) => started.connector.once('registered', () => resolve()));
  return started;
}

const LOG_METHODS = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' } as const;

async function startOnThread(entry: string, s: QuickConnectorStart, log: Logger): Promise<RunningConnector> {
  const worker = new Worker(entry, { workerData: s });
  let stopped: (() => void) | undefined;
  let failed: ((err: Error) => void) | undefined;
  const registered = new Promise<void>((resolve, reject) => {
    worker.on('message', (m: FromConnector) => {
      if (m.type === 'log') {
        // The connector's pino records, logged again here so they reach this process's log (and --logfile).
        const { level, time: _time, msg, ...fields } = JSON.parse(m.line) as Record<string, unknown>;
        log[LOG_METHODS[level as keyof typeof LOG_METHODS] ?? 'info'](fields, String(msg ?? ''));
      } else if (m.type === 'registered') resolve();
      else if (m.type === 'failed') reject(new OxyError(m.code && isErrorCode(m.code) ? m.code : 'OXY_ERR_QUICK_CONNECTOR', m.message));
      else if (m.type === 'stopped') stopped?.();
    });
    failed = reject;
  });
  // A crash on the connector's thread is a crash of the command, as it would be on this one.
  worker.on('error', (err: Error) => {
    if (failed) failed(err);
    else
      setImmediate(() => {
        throw err;
      });
  });
  worker.on('exit', (code) => {
    stopped?.();
    failed?.(new OxyError('OXY_ERR_QUICK_CONNECTOR', `The connector's thread exited (${code}) before it registered`));
  });
  try {
    await registered;
  } catch (err) {
    await worker.terminate();
    throw err;
  }
  failed = undefined;
  return {
    stop: async (graceMs) => {
      const done = new Promise<void>((resolve) => (stopped = resolve));
      worker.postMessage({ type: 'stop', graceMs });
      await done;
      await worker.terminate();
    },
  };
}

/** The connector's thread (quick-connector-worker.ts runs this). */
export async function runQuickConnector(): Promise<void> {
  const port = parentPort;
  if (!port) throw new Error('runQuickConnector runs on a worker thread');
  const s = workerData as QuickConnectorStart;
  const send = (m: FromConnector): void => port.postMessage(m);
  const log = createLogger({ level: s.logLevel, format: 'json', stream: { write: (line: string) => send({ type: 'log', line }) } });
  let store: Store | undefined;
  try {
    store = await Store.open({ home: s.home, url: s.storeUrl });
    const opened = store;
    const config = s.config && parseConfig(s.config.raw, s.config.source);
    const started = await startConnector(log, {
      home: s.home,
      tunnelRef: s.tunnelId,
      store: async () => opened,
      version: s.version,
      config: quickConfig(config),
      options: s.options,
    });
    started.connector.once('registered', () => send({ type: 'registered' }));
    port.on('message', (m: { type: 'stop'; graceMs?: number }) => {
      if (m.type !== 'stop') return;
      void started
        .stop(m.graceMs)
        .then(() => opened.close())
        .finally(() => {
          send({ type: 'stopped' });
          port.close();
        });
    });
  } catch (err) {
    await store?.close();
    const e = err as { code?: string; message?: string };
    send({ type: 'failed', code: e.code, message: e.message ?? String(err) });
    port.close();
  }
}
