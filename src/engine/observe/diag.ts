/**
 * `tunnel ready` and `tunnel diag` against a running connector's metrics server, as
 * cloudflared's: /ready decides readiness; diag gathers the connector's own view
 * (/diag/configuration, /diag/tunnel, /metrics), its log file, and this host's system
 * information into one .tar.gz, so a bug report carries everything at once.
 */
import { createReadStream, createWriteStream, statSync } from 'node:fs';
import { arch, cpus, freemem, hostname, loadavg, networkInterfaces, platform, release, totalmem, uptime, type as osType } from 'node:os';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { pack } from 'tar-stream';
import { OxyError } from '../../core/errors.js';
import { KNOWN_METRICS_ADDRESSES } from './metrics.js';

const base = (metrics: string): string => `http://${metrics}`;

async function get(url: string, timeoutMs: number): Promise<{ status: number; body: string }> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    return { status: res.status, body: await res.text() };
  } catch (err) {
    throw new OxyError(
      'OXY_ERR_CONNECTOR_UNREACHABLE',
      `Cannot reach the connector's metrics server at ${url}: ${(err as Error).message}. Pass the address its --metrics listens on.`,
      { cause: err },
    );
  }
}

/** cloudflared's `tunnel ready`: fine when /ready answers 200, else its status and body. */
export async function checkReady(metrics: string, timeoutMs = 5000): Promise<void> {
  const url = `${base(metrics)}/ready`;
  const r = await get(url, timeoutMs);
  if (r.status !== 200) throw new OxyError('OXY_ERR_TUNNEL_NOT_READY', `${url} endpoint returned status code ${r.status}\n${r.body.trim()}`);
}

/**
 * The connector to diagnose when no --metrics is given: the one oxyctl connector listening on
 * a known metrics address (cloudflared's search); none or several is an error naming them.
 */
export async function findLocalConnector(addresses: string[] = KNOWN_METRICS_ADDRESSES): Promise<string> {
  const found = (
    await Promise.all(
      addresses.map(async (a) => {
        const r = await get(`${base(a)}/diag/configuration`, 1000).catch(() => undefined);
        return r?.status === 200 ? a : undefined;
      }),
    )
  ).filter((a): a is string => a !== undefined);
  if (found.length === 1) return found[0];
  if (found.length === 0) {
    throw new OxyError(
      'OXY_ERR_CONNECTOR_UNREACHABLE',
      `No oxyctl connector answers on the known metrics addresses (${addresses.join(', ')}): pass --metrics HOST:PORT.`,
    );
  }
  throw new OxyError('OXY_ERR_CONNECTOR_UNREACHABLE', `Several connectors answer (${found.join(', ')}): pass --metrics with the one to diagnose.`);
}

export interface DiagOptions {
  metrics: string;
  /** Directory the archive is written to. */
  outDir: string;
  noLogs?: boolean;
  noMetrics?: boolean;
  noSystem?: boolean;
  now?: Date;
}

/** The last bytes of a log file: enough for a report, bounded for a long-running connector. */
const LOG_TAIL_BYTES = 16 * 1024 * 1024;

export function systemInformation(): Record<string, unknown> {
  return {
    hostname: hostname(),
    os: { type: osType(), platform: platform(), release: release(), arch: arch() },
    uptimeSeconds: uptime(),
    loadavg: loadavg(),
    memory: { total: totalmem(), free: freemem() },
    cpus: cpus().map((c) => c.model),
    node: process.versions,
    interfaces: Object.fromEntries(Object.entries(networkInterfaces()).map(([name, addrs]) => [name, (addrs ?? []).map((a) => `${a.address}/${a.netmask}`)])),
  };
}

/** Collects what it can (each part's failure is written into the archive, not fatal); returns the archive path and its entries. */
export async function collectDiag(o: DiagOptions): Promise<{ path: string; entries: string[] }> {
  const url = base(o.metrics);
  // The connector must answer: without it there is nothing to diagnose.
  const configuration = await get(`${url}/diag/configuration`, 5000);
  if (configuration.status !== 200) {
    throw new OxyError(
      'OXY_ERR_CONNECTOR_UNREACHABLE',
      `${url} does not serve /diag/configuration (status ${configuration.status}): is it an oxyctl connector's --metrics address?`,
    );
  }
  const files: { name: string; content: string | Buffer }[] = [{ name: 'configuration.json', content: configuration.body }];
  const attempt = async (name: string, fetchIt: () => Promise<string | Buffer>) => {
    try {
      files.push({ name, content: await fetchIt() });
    } catch (err) {
      files.push({ name: `${name}.error.txt`, content: `${(err as Error).message}\n` });
    }
  };
  await attempt('tunnel.json', async () => (await get(`${url}/diag/tunnel`, 5000)).body);
  if (!o.noMetrics) await attempt('metrics.txt', async () => (await get(`${url}/metrics`, 5000)).body);
  if (!o.noSystem) await attempt('systeminformation.json', async () => JSON.stringify(systemInformation(), null, 2));
  if (!o.noLogs) {
    const logfile = (JSON.parse(configuration.body) as { logfile?: string }).logfile;
    await attempt('oxyctl.log', async () => {
      if (!logfile) throw new Error('The connector writes no log file (start it with --logfile or --log-directory to include its log)');
      return readTail(logfile, LOG_TAIL_BYTES);
    });
  }
  const stamp = (o.now ?? new Date())
    .toISOString()
    .replace(/\.\d{3}Z$/, '')
    .replace(/:/g, '-');
  const path = `${o.outDir}/oxyctl-diag-${stamp}.tar.gz`;
  const archive = pack();
  const written = pipeline(archive, createGzip(), createWriteStream(path, { mode: 0o600 }));
  for (const f of files) archive.entry({ name: f.name, mode: 0o600 }, f.content);
  archive.finalize();
  await written;
  return { path, entries: files.map((f) => f.name) };
}

async function readTail(path: string, maxBytes: number): Promise<Buffer> {
  const size = statSync(path).size;
  const chunks: Buffer[] = [];
  for await (const chunk of createReadStream(path, { start: Math.max(0, size - maxBytes) })) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
