/**
 * The quick tunnel (`oxyctl tunnel --hello-world` / `--url URL`): an edge and a connector
 * in one process, around an ephemeral tunnel in a throwaway data directory, so one command
 * gives a URL that reaches the origin. Everything is removed when it stops.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createTunnel } from '../core/tunnels.js';
import { STORE_FILE, Store } from '../store/index.js';
import { startConnector, type ConnectorOptions, type StartedConnector } from './connector/start.js';
import { runEdge } from './edge/run.js';
import type { EdgeServer } from './edge/server.js';
import type { Logger } from './observe/log.js';
import type { ConnectorConfig } from './connector/config.js';

export interface QuickTunnel {
  url: string;
  edge: EdgeServer;
  connector: StartedConnector;
  stop(graceMs?: number): Promise<void>;
}

export async function startQuickTunnel(o: {
  log: Logger;
  httpListen: string;
  version: string;
  options: Omit<ConnectorOptions, 'edge' | 'edgeCa'>;
  config?: ConnectorConfig;
}): Promise<QuickTunnel> {
  const home = mkdtempSync(join(tmpdir(), 'oxyctl-quick-'));
  // Always a throwaway SQLite store of its own, whatever OXY_STORE says.
  const store = await Store.open({ home, url: `sqlite:${join(home, STORE_FILE)}` });
  try {
    const { tunnel } = await createTunnel(store, { name: `quick-${randomBytes(4).toString('hex')}` });
    const edge = await runEdge({ home, store, log: o.log, tunnelListen: '127.0.0.1:0', httpListen: o.httpListen, location: 'quick', defaultTunnel: tunnel.id });
    const tunnelAddr = edge.tunnelAddresses[0].address;
    const connector = await startConnector(o.log, {
      home,
      tunnelRef: tunnel.id,
      store: async () => store,
      version: o.version,
      // Its rules and warp-routing only: the tunnel is the ephemeral one, never the file's.
      config: o.config && { ...o.config, tunnel: undefined, credentialsFile: undefined },
      options: { ...o.options, edge: `127.0.0.1:${tunnelAddr.port}` },
    });
    await new Promise<void>((resolve) => connector.connector.once('registered', () => resolve()));
    const http = edge.httpAddress!;
    return {
      url: `http://${http.address.includes(':') ? `[${http.address}]` : http.address}:${http.port}`,
      edge,
      connector,
      stop: async (graceMs) => {
        await connector.stop(graceMs);
        await edge.stop();
        await store.close();
        rmSync(home, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await store.close();
    rmSync(home, { recursive: true, force: true });
    throw err;
  }
}
