/**
 * A cloudflared config.yml takes effect under oxyctl, checked by behaviour: the protocol the
 * connections really use, the metrics port really bound, the log file really written, the
 * HA connection count; flags before the subcommand and on the command line win over the file;
 * keys without effect and unknown keys are said on stderr. Then the services cloudflared has
 * beyond HTTP: socks-proxy (whose ipRules are enforced) and bastion.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { connect, createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { BIN, oxy, oxyOk, tempHome } from '../../helpers/cli.js';
import { OxyProcess, freePort, startEdge } from '../../helpers/processes.js';
import { until } from '../../helpers/until.js';
import { findLocalConnector } from '../../../src/engine/observe/diag.js';

const run = promisify(execFile);
let home: string;
let cleanup: () => void;
let edge: Awaited<ReturnType<typeof startEdge>>;
const procs: OxyProcess[] = [];

beforeAll(async () => {
  ({ home, cleanup } = tempHome());
  await oxyOk(home, ['tunnel', 'create', 'web']);
  await oxyOk(home, ['tunnel', 'route', 'dns', 'web', 'app.example.com']);
  edge = await startEdge(home);
  procs.push(edge.edge);
});
afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop('SIGKILL')));
  cleanup();
});

const curlHost = (host: string) => run('curl', ['-sS', '-H', `Host: ${host}`, `http://127.0.0.1:${edge.httpPort}/`]);

describe('config.yml keys act as their flags', () => {
  it('protocol, metrics, logfile, ha-connections, hello-world, edge, pidfile from the file', async () => {
    const metricsPort = await freePort();
    const logfile = join(home, 'logs', 'connector.log');
    const pidfile = join(home, 'connector.pid');
    writeFileSync(
      join(home, 'config.yml'),
      `tunnel: web
protocol: quic
metrics: 127.0.0.1:${metricsPort}
logfile: ${logfile}
pidfile: ${pidfile}
ha-connections: 2
grace-period: 1s
hello-world: true
edge: 127.0.0.1:${edge.tunnelPort}
no-autoupdate: true
surprise-key: 1
`,
    );
    const c = new OxyProcess(home, ['tunnel', 'run']);
    procs.push(c);
    await c.waitFor(/Registered tunnel connection connIndex=0 .*protocol=quic/);
    await c.waitFor(/Registered tunnel connection connIndex=1 .*protocol=quic/);
    expect(c.output).toContain('has keys oxyctl does not know, ignored: surprise-key');
    expect(c.output).toContain('no-autoupdate has no effect in oxyctl');
    const ready = await fetch(`http://127.0.0.1:${metricsPort}/ready`);
    expect(await ready.json()).toMatchObject({ status: 200, readyConnections: 2 });
    expect((await curlHost('app.example.com')).stdout).toContain('Congrats!');
    expect(readFileSync(logfile, 'utf8')).toMatch(/Registered tunnel connection connIndex=1 /);
    // cloudflared's metric names, oxyctl_ for cloudflared_ (README: the relabel rule).
    // The request's end reaches the connector's gauge when the client's tunnel stream ends
    // (one stream per client connection), a moment after curl has its answer.
    const scrape = async () => (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const metrics = await until(
      async () => {
        const text = await scrape();
        return /^oxyctl_tunnel_concurrent_requests_per_tunnel 0$/m.test(text) ? text : undefined;
      },
      5000,
      'the concurrent-requests gauge back at 0',
    );
    expect(metrics).toMatch(/^oxyctl_tunnel_ha_connections 2$/m);
    expect(metrics).toMatch(/^oxyctl_tunnel_total_requests 1$/m);
    expect(metrics).toMatch(/^oxyctl_tunnel_response_by_code\{status_code="200"\} 1$/m);
    expect(metrics).toMatch(/^oxyctl_tunnel_request_errors 0$/m);
    expect(metrics).toMatch(/^oxyctl_tunnel_concurrent_requests_per_tunnel 0$/m);
    expect(metrics).toMatch(/^oxyctl_tunnel_server_locations\{connection_id="[0-9a-f-]{36}",edge_location="[^"]+"\} 1$/m);
    expect(metrics).toMatch(/^oxyctl_tunnel_connection_events\{protocol="quic",event="registered"\} 2$/m);
    expect(metrics).toMatch(/^oxyctl_quic_client_total_connections 2$/m);
    // tunnel ready and tunnel diag against this connector's metrics server.
    expect((await oxy(home, ['tunnel', 'ready', '--metrics', `127.0.0.1:${metricsPort}`])).code).toBe(0);
    const diag = await run(process.execPath, [BIN, 'tunnel', 'diag', '--metrics', `127.0.0.1:${metricsPort}`], {
      cwd: home,
      env: { ...process.env, OXY_HOME: home },
    });
    const archive = /Diagnostic file written: (.*\.tar\.gz)/.exec(diag.stdout)![1];
    expect((await run('tar', ['tzf', archive])).stdout.split('\n').filter(Boolean).sort()).toEqual([
      'configuration.json',
      'metrics.txt',
      'oxyctl.log',
      'systeminformation.json',
      'tunnel.json',
    ]);
    // Without --metrics, diag looks on the known addresses (here a list the test controls).
    const dead = await freePort();
    expect(await findLocalConnector([`127.0.0.1:${dead}`, `127.0.0.1:${metricsPort}`])).toBe(`127.0.0.1:${metricsPort}`);
    await expect(findLocalConnector([`127.0.0.1:${dead}`])).rejects.toThrow('pass --metrics HOST:PORT');
    const log = (await run('tar', ['xzOf', archive, 'oxyctl.log'])).stdout;
    expect(log).toMatch(/Registered tunnel connection connIndex=0 /);
    const tunnel = JSON.parse((await run('tar', ['xzOf', archive, 'tunnel.json'])).stdout);
    expect(tunnel.connections.filter((x: { isConnected: boolean }) => x.isConnected)).toHaveLength(2);
    expect(readFileSync(pidfile, 'utf8').trim()).toBe(String(c.child.pid));
    expect(c.output).not.toMatch(/connIndex=2 /);
    c.child.kill('SIGTERM');
    expect(await c.exited()).toBe(0);
  });

  it('flags before the subcommand win over the file; cloudflared-only flags are accepted with one notice', async () => {
    const c = new OxyProcess(home, ['tunnel', '--no-autoupdate', '-p', 'http2', '--metrics', '127.0.0.1:0', 'run', '--region', 'us']);
    procs.push(c);
    await c.waitFor(/Registered tunnel connection connIndex=0 .*protocol=http2/);
    expect(c.output).toContain('--no-autoupdate has no effect in oxyctl');
    expect(c.output).toContain('--region has no effect in oxyctl');
    // Said once: config.yml's no-autoupdate key is not said again.
    expect(c.count(/no-autoupdate/)).toBe(1);
    c.child.kill('SIGTERM');
    expect(await c.exited()).toBe(0);
  });

  it('gives up after --retries when the edge never answers', async () => {
    const dead = await freePort();
    writeFileSync(join(home, 'none.yml'), '');
    const pidfile = join(home, 'never.pid');
    const c = new OxyProcess(home, [
      'tunnel',
      'run',
      '--config',
      join(home, 'none.yml'),
      '-p',
      'http2',
      '--edge',
      `127.0.0.1:${dead}`,
      '--retries',
      '1',
      '--pidfile',
      pidfile,
      '--hello-world',
      'web',
    ]);
    procs.push(c);
    expect(await c.exited()).not.toBe(0);
    expect(c.output).toContain('Could not connect to the edge after 2 attempts (--retries 1)');
    expect(existsSync(pidfile)).toBe(false); // written only after a connection registered
    const notReady = await oxy(home, ['tunnel', 'ready', '--metrics', `127.0.0.1:${dead}`]);
    expect(notReady.code).not.toBe(0);
    expect(notReady.stderr).toContain("Cannot reach the connector's metrics server");
  });
});

describe('--retries bounds the reconnects of a connection at any time, as cloudflared', () => {
  it('a dropped connection that fails --retries reconnects in a row gives up; a reconnect that succeeds starts the count again', async () => {
    // A TCP relay in front of the edge: closing it drops the connections and refuses reconnects.
    const relayPort = await freePort();
    const sockets = new Set<Socket>();
    let relay: NetServer | undefined;
    const relayUp = () =>
      new Promise<void>((resolve) => {
        relay = createNetServer((down) => {
          const up = connect(edge.tunnelPort, '127.0.0.1');
          for (const s of [down, up]) {
            sockets.add(s);
            s.on('error', () => undefined).on('close', () => sockets.delete(s));
          }
          down.pipe(up).pipe(down);
        });
        relay.listen(relayPort, '127.0.0.1', () => resolve());
      });
    const relayDown = () => {
      relay?.close();
      for (const s of sockets) s.destroy();
    };
    await relayUp();
    writeFileSync(join(home, 'none.yml'), '');
    const c = new OxyProcess(home, [
      'tunnel',
      'run',
      '--config',
      join(home, 'none.yml'),
      '-p',
      'http2',
      '--edge',
      `127.0.0.1:${relayPort}`,
      '--retries',
      '3',
      '--ha-connections',
      '2',
      '--metrics',
      '127.0.0.1:0',
      '--hello-world',
      'web',
    ]);
    procs.push(c);
    const registered = () => c.count(/Registered tunnel connection/);
    const refused = () => c.count(/Unable to establish connection with the edge/);
    await vi.waitFor(() => expect(registered()).toBe(2), { timeout: 15_000 });
    // A blip: each connection fails one reconnect, then the edge is back and both register again.
    relayDown();
    await vi.waitFor(() => expect(refused()).toBeGreaterThanOrEqual(2), { timeout: 15_000, interval: 20 });
    await relayUp();
    await vi.waitFor(() => expect(registered()).toBe(4), { timeout: 15_000 });
    expect(c.output).not.toContain('gave up');
    // Gone for good: each connection makes 3 reconnects (the count restarted), gives up, and the connector exits non-zero.
    const before = refused();
    relayDown();
    expect(await c.exited()).not.toBe(0);
    expect(c.count(/Connection gave up/)).toBe(2);
    expect(refused() - before).toBe(6);
    expect(c.output).toContain('Every connection to the edge dropped and failed 3 reconnects in a row (--retries 3)');
  }, 40_000);
});

describe('a cloudflared host migrates by installing oxyctl', () => {
  it('runs from ~/.cloudflared/config.yml and its <TunnelID>.json credentials, with one notice', async () => {
    const { mkdirSync } = await import('node:fs');
    const user = join(home, 'user');
    const data = join(home, 'data-empty');
    mkdirSync(join(user, '.cloudflared'), { recursive: true });
    mkdirSync(data);
    const [web] = JSON.parse(await oxyOk(home, ['tunnel', 'list', '--name', 'web', '-o', 'json'])) as { id: string }[];
    const ours = JSON.parse(readFileSync(join(home, `${web.id}.json`), 'utf8'));
    // Exactly the fields cloudflared writes (no Endpoint), next to a config naming the tunnel by ID.
    writeFileSync(
      join(user, '.cloudflared', `${web.id}.json`),
      JSON.stringify({ AccountTag: ours.AccountTag, TunnelSecret: ours.TunnelSecret, TunnelID: ours.TunnelID }),
    );
    writeFileSync(
      join(user, '.cloudflared', 'config.yml'),
      `tunnel: ${web.id}
protocol: http2
metrics: 127.0.0.1:0
edge: 127.0.0.1:${edge.tunnelPort}
ingress:
  - hostname: app.example.com
    service: hello_world
  - service: http_status:404
`,
    );
    // The edge CA is trusted from the edge's data directory (a connector elsewhere would use --edge-ca or a token).
    const c = new OxyProcess(data, ['tunnel', 'run', '--edge-ca', join(home, 'edge', 'ca.pem')], { HOME: user });
    procs.push(c);
    await c.waitFor(/Registered tunnel connection connIndex=0 /);
    expect(c.output).toContain(`Using cloudflared's config file ${join(user, '.cloudflared', 'config.yml')}`);
    expect((await curlHost('app.example.com')).stdout).toContain('Congrats!');
    c.child.kill('SIGTERM');
    expect(await c.exited()).toBe(0);
  });
});

describe('socks-proxy and bastion services', () => {
  let allowed: Server;
  let denied: Server;
  let access: { socks: number; socks2: number; bastion: number; bastionDenied: number };
  const origin = (text: string) =>
    new Promise<Server>((resolve) => {
      const s = createServer((_req, res) => res.end(text));
      s.listen(0, '127.0.0.1', () => resolve(s));
    });
  const portOf = (s: Server) => (s.address() as { port: number }).port;

  beforeAll(async () => {
    allowed = await origin('allowed origin');
    denied = await origin('denied origin');
    await oxyOk(home, ['tunnel', 'route', 'dns', 'web', 'socks.example.com']);
    await oxyOk(home, ['tunnel', 'route', 'dns', 'web', 'bastion.example.com']);
    await oxyOk(home, ['tunnel', 'route', 'dns', 'web', 'socks2.example.com']);
    const config = join(home, 'socks.yml');
    writeFileSync(
      config,
      `ingress:
  - hostname: socks.example.com
    service: socks-proxy
    originRequest:
      ipRules:
        - prefix: 127.0.0.1/32
          ports: [${portOf(allowed)}]
          allow: true
        - prefix: 0.0.0.0/0
          allow: false
  - hostname: socks2.example.com
    service: tcp://127.0.0.1:9
    originRequest:
      proxyType: socks
      ipRules:
        - prefix: 127.0.0.1/32
          ports: [${portOf(allowed)}]
          allow: true
  - hostname: bastion.example.com
    service: bastion
    originRequest:
      ipRules:
        - prefix: 127.0.0.0/8
          ports: [${portOf(allowed)}]
          allow: true
  - service: http_status:404
`,
    );
    const c = new OxyProcess(home, [
      'tunnel',
      'run',
      '--config',
      config,
      '-p',
      'http2',
      '--edge',
      `127.0.0.1:${edge.tunnelPort}`,
      '--metrics',
      '127.0.0.1:0',
      'web',
    ]);
    procs.push(c);
    await c.waitFor(/Registered tunnel connection connIndex=0 /);
    access = { socks: await freePort(), socks2: await freePort(), bastion: await freePort(), bastionDenied: await freePort() };
    const edgeUrl = `http://127.0.0.1:${edge.httpPort}`;
    const a1 = new OxyProcess(home, ['access', 'tcp', '--hostname', 'socks.example.com', '--url', `127.0.0.1:${access.socks}`, '--edge', edgeUrl]);
    const a2 = new OxyProcess(home, [
      'access',
      'tcp',
      '--hostname',
      'bastion.example.com',
      '--destination',
      `127.0.0.1:${portOf(allowed)}`,
      '--url',
      `127.0.0.1:${access.bastion}`,
      '--edge',
      edgeUrl,
    ]);
    const a3 = new OxyProcess(home, [
      'access',
      'tcp',
      '--hostname',
      'bastion.example.com',
      '--destination',
      `127.0.0.1:${portOf(denied)}`,
      '--url',
      `127.0.0.1:${access.bastionDenied}`,
      '--edge',
      edgeUrl,
    ]);
    const a4 = new OxyProcess(home, ['access', 'tcp', '--hostname', 'socks2.example.com', '--url', `127.0.0.1:${access.socks2}`, '--edge', edgeUrl]);
    procs.push(a1, a2, a3, a4);
    await Promise.all([a1, a2, a3, a4].map((a) => a.waitFor(/Start Websocket listener/)));
  });
  afterAll(() => {
    allowed.close();
    denied.close();
  });

  it('socks-proxy reaches what ipRules allow and refuses the rest (SOCKS reply 2)', async () => {
    const viaSocks = (port: number) => run('curl', ['-sS', '--max-time', '10', '--socks5', `127.0.0.1:${access.socks}`, `http://127.0.0.1:${port}/`]);
    expect((await viaSocks(portOf(allowed))).stdout).toBe('allowed origin');
    const refused = await viaSocks(portOf(denied)).catch((err: { stderr: string; code: number }) => err);
    expect(refused).toMatchObject({ code: 97 }); // curl: "connection to proxy closed" / SOCKS5 refusal
    expect((refused as { stderr: string }).stderr).toMatch(/not allowed|SOCKS5/i);
  });

  it('proxyType: socks makes a tcp:// rule a SOCKS5 proxy under its ipRules', async () => {
    const viaSocks = (port: number) => run('curl', ['-sS', '--max-time', '10', '--socks5', `127.0.0.1:${access.socks2}`, `http://127.0.0.1:${port}/`]);
    expect((await viaSocks(portOf(allowed))).stdout).toBe('allowed origin');
    expect(await viaSocks(portOf(denied)).catch((err: { code: number }) => err)).toMatchObject({ code: 97 });
  });

  it('bastion dials the destination the client names, within its ipRules', async () => {
    const { stdout } = await run('curl', ['-sS', '--max-time', '10', `http://127.0.0.1:${access.bastion}/`]);
    expect(stdout).toBe('allowed origin');
    const refused = await run('curl', ['-sS', '--max-time', '10', `http://127.0.0.1:${access.bastionDenied}/`]).catch((err: { code: number }) => err);
    expect(refused).toMatchObject({ code: 52 }); // empty reply: access tcp closes the local connection the edge refused
  });
});
