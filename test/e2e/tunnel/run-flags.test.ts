/**
 * The `tunnel run` flags cloudflared users pass, each checked by what it changes:
 * --token-file, --http-host-header (the Host the origin sees), --edge-bind-address (the
 * source address the edge records), --log-directory, --label, --unix-socket,
 * --no-tls-verify, --edge-ip-version.
 */
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createTlsServer, type Server as HttpsServer } from 'node:https';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { oxy, oxyOk, tempHome } from '../../helpers/cli.js';
import { OxyProcess, startEdge } from '../../helpers/processes.js';

const run = promisify(execFile);
let home: string;
let cleanup: () => void;
let edge: Awaited<ReturnType<typeof startEdge>>;
let echoHost: Server;
let unixOrigin: Server;
let tlsOrigin: HttpsServer;
const procs: OxyProcess[] = [];

const listen = <T extends Server | HttpsServer>(s: T, where: string | number) =>
  new Promise<T>((resolve) => (typeof where === 'string' ? s.listen(where, () => resolve(s)) : s.listen(where, '127.0.0.1', () => resolve(s))));
const portOf = (s: Server | HttpsServer) => (s.address() as { port: number }).port;
const curlHost = (host: string) => run('curl', ['-sS', '-H', `Host: ${host}`, `http://127.0.0.1:${edge.httpPort}/`]);

beforeAll(async () => {
  ({ home, cleanup } = tempHome());
  for (const [name, host] of [
    ['flags', 'flags.example.com'],
    ['sock', 'sock.example.com'],
    ['tls', 'tls.example.com'],
  ]) {
    await oxyOk(home, ['tunnel', 'create', name]);
    await oxyOk(home, ['tunnel', 'route', 'dns', name, host]);
  }
  edge = await startEdge(home);
  procs.push(edge.edge);
  echoHost = await listen(
    createServer((req, res) => res.end(`host=${req.headers.host}`)),
    0,
  );
  unixOrigin = await listen(
    createServer((_req, res) => res.end('from the unix socket')),
    join(home, 'origin.sock'),
  );
  // The edge's own certificate: signed by a CA no system trusts.
  tlsOrigin = await listen(
    createTlsServer({ cert: readFileSync(join(home, 'edge', 'cert.pem')), key: readFileSync(join(home, 'edge', 'key.pem')) }, (_req, res) =>
      res.end('over tls'),
    ),
    0,
  );
});
afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop('SIGKILL')));
  for (const s of [echoHost, unixOrigin, tlsOrigin]) s.close();
  cleanup();
});

const connector = async (args: string[]) => {
  const c = new OxyProcess(home, [
    'tunnel',
    'run',
    '-p',
    'http2',
    '--edge',
    `127.0.0.1:${edge.tunnelPort}`,
    '--metrics',
    '127.0.0.1:0',
    '--ha-connections',
    '1',
    ...args,
  ]);
  procs.push(c);
  await c.waitFor(/Registered tunnel connection connIndex=0 /);
  return c;
};

describe('tunnel run flags', () => {
  it('--token-file, --http-host-header, --edge-bind-address, --log-directory, --label', async () => {
    const tokenFile = join(home, 'token');
    writeFileSync(tokenFile, `${(await oxyOk(home, ['tunnel', 'token', 'flags'])).trim()}\n`);
    const logDir = join(home, 'logs');
    await connector([
      '--token-file',
      tokenFile,
      '--url',
      `http://127.0.0.1:${portOf(echoHost)}`,
      '--http-host-header',
      'inner.example',
      '--edge-bind-address',
      '127.0.0.2',
      '--log-directory',
      logDir,
      '--label',
      'site-a',
    ]);
    expect((await curlHost('flags.example.com')).stdout).toBe('host=inner.example');
    const info = JSON.parse(await oxyOk(home, ['tunnel', 'info', '-o', 'json', 'flags']));
    expect(info.conns[0].conns[0].origin_ip).toBe('127.0.0.2');
    const log = readFileSync(join(logDir, 'oxyctl.log'), 'utf8');
    expect(log).toMatch(/Starting tunnel .*label=site-a/);
    expect(log).toMatch(/Registered tunnel connection connIndex=0 /);
  });

  it('--unix-socket serves the origin on a unix socket', async () => {
    await connector(['--unix-socket', join(home, 'origin.sock'), 'sock']);
    expect((await curlHost('sock.example.com')).stdout).toBe('from the unix socket');
  });

  it('--no-tls-verify reaches an origin whose certificate no system trusts; without it, a 502', async () => {
    const strict = await connector(['--url', `https://127.0.0.1:${portOf(tlsOrigin)}`, 'tls']);
    const refused = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '-H', 'Host: tls.example.com', `http://127.0.0.1:${edge.httpPort}/`]);
    expect(refused.stdout).toBe('502');
    await strict.stop('SIGTERM');
    await connector(['--url', `https://127.0.0.1:${portOf(tlsOrigin)}`, '--no-tls-verify', 'tls']);
    expect((await curlHost('tls.example.com')).stdout).toBe('over tls');
  });

  it("originRequest.matchSNItoHost: the TLS origin receives each request's Host as SNI (after httpHostHeader); without it, none", async () => {
    await oxyOk(home, ['tunnel', 'create', 'sni']);
    for (const host of ['a', 'b', 'plain', 'named', 'server-name', 'inner'].map((h) => `${h}.sni.example.com`))
      await oxyOk(home, ['tunnel', 'route', 'dns', 'sni', host]);
    const sniOrigin = await listen(
      createTlsServer({ cert: readFileSync(join(home, 'edge', 'cert.pem')), key: readFileSync(join(home, 'edge', 'key.pem')) }, (req, res) =>
        res.end(`sni=${(req.socket as TLSSocket).servername}`),
      ),
      0,
    );
    const service = `https://127.0.0.1:${portOf(sniOrigin)}`;
    const config = join(home, 'sni.yml');
    writeFileSync(
      config,
      `ingress:
  - hostname: plain.sni.example.com
    service: ${service}
    originRequest: { noTLSVerify: true }
  - hostname: named.sni.example.com
    service: https://localhost:${portOf(sniOrigin)}
    originRequest: { noTLSVerify: true }
  - hostname: server-name.sni.example.com
    service: ${service}
    originRequest: { noTLSVerify: true, originServerName: origin.example }
  - hostname: inner.sni.example.com
    service: ${service}
    originRequest: { noTLSVerify: true, matchSNItoHost: true, httpHostHeader: origin.internal }
  - service: ${service}
    originRequest: { noTLSVerify: true, matchSNItoHost: true }
`,
    );
    const c = await connector(['--config', config, 'sni']);
    expect(c.output).not.toContain('matchSNItoHost');
    // One rule, several hosts: each connection to the origin names its own host (a cached one too).
    for (const host of ['a.sni.example.com', 'b.sni.example.com', 'a.sni.example.com']) expect((await curlHost(host)).stdout).toBe(`sni=${host}`);
    expect((await curlHost('inner.sni.example.com')).stdout).toBe('sni=origin.internal');
    // Without it, as Go's: originServerName, else the service URL's name, else none (an IP address) — never the client's Host.
    expect((await curlHost('plain.sni.example.com')).stdout).toBe('sni=false');
    expect((await curlHost('named.sni.example.com')).stdout).toBe('sni=localhost');
    expect((await curlHost('server-name.sni.example.com')).stdout).toBe('sni=origin.example');
    sniOrigin.close();
  });

  it('--edge-ip-version 6 refuses an IPv4 edge address, naming both', async () => {
    const r = await oxy(home, ['tunnel', 'run', '--edge', `127.0.0.1:${edge.tunnelPort}`, '--edge-ip-version', '6', '--hello-world', 'flags']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('The edge address 127.0.0.1 is IPv4, but --edge-ip-version is 6');
  });
});
