/**
 * One private site behind the edge, for tests of the edge's IP path with real processes:
 * an edge namespace running `oxyctl edge run` (extra flags: e.g. --hooks), a data-centre
 * namespace with a connector of tunnel "site" that serves 198.18.0.0/24 in vnet "site"
 * (host 198.18.0.10 on its lo), and a device namespace whose traffic to that range goes
 * to the edge through `oxyctl warp connect`. Every host is a namespace made and deleted here.
 *
 *   device ns ──(SEQPACKET, a file path)── edge ns ──veth 198.18.1.0/30── dc ns (connector, host 198.18.0.10)
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, oxyOk, sharedHome, storeEnv } from './cli.js';
import { TestNetns } from './netns.js';
import { killOnExit } from './processes.js';
import { until } from './until.js';

/** The edge's metrics port inside its own namespace (nothing else listens there). */
export const SITE_METRICS_PORT = 7845;

/**
 * One counter of the edge's /metrics now, by its one label: the count for a label value, -1 when
 * the series is not there.
 */
export function edgeCounter(site: Pick<VnetSite, 'edgeNs'>, name: string): (value: string) => number {
  const metrics = site.edgeNs.exec('curl', ['-s', `http://127.0.0.1:${SITE_METRICS_PORT}/metrics`]);
  return (value) => Number(new RegExp(`^${name}\\{[a-z_]+="${value}"\\} (\\d+)`, 'm').exec(metrics)?.[1] ?? -1);
}

/** A process in a namespace whose output can be awaited. */
export class NsProcess {
  output = '';
  constructor(readonly child: ChildProcess) {
    killOnExit(child);
    child.stdout?.on('data', (d) => (this.output += d));
    child.stderr?.on('data', (d) => (this.output += d));
  }

  async waitFor(re: RegExp, timeoutMs = 45_000): Promise<RegExpMatchArray> {
    const t0 = Date.now();
    for (;;) {
      const m = this.output.match(re);
      if (m) return m;
      if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${re}:\n${this.output}`);
      if (this.child.exitCode !== null) throw new Error(`exited ${this.child.exitCode} before ${re}:\n${this.output}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    // A process that ignores SIGTERM would surface only as a hook timeout (and stay behind):
    // name it, show its last words, and SIGKILL it.
    const slow = setTimeout(() => {
      console.error(`still running 20 s after SIGTERM, killed: ${this.child.spawnargs.join(' ')}\n${this.output.slice(-2000)}`);
      this.child.kill('SIGKILL');
    }, 20_000);
    await new Promise((r) => this.child.once('exit', r));
    clearTimeout(slow);
  }
}

export interface VnetSite {
  home: string;
  edgeNs: TestNetns;
  dc: TestNetns;
  device: TestNetns;
  edge: NsProcess;
  connector: NsProcess;
  warp: NsProcess;
  /** Runs a command in the device namespace; never throws on its exit code. */
  inDevice(command: string, args: string[], options?: { input?: string; timeoutMs?: number }): Promise<{ code: number; stdout: string; stderr: string }>;
  /** Starts a long-running process in a namespace; stopped by close(). */
  spawnIn(ns: TestNetns, command: string, args: string[]): NsProcess;
  close(): Promise<void>;
}

/** The store of a site, made once per test file (every site's is the same) and copied for each. */
const siteStore = async (home: string, vnetComment: string[]): Promise<void> => {
  await oxyOk(home, ['vnet', 'add', '--default', 'site', ...vnetComment]);
  await oxyOk(home, ['tunnel', 'create', 'site']);
  await oxyOk(home, ['tunnel', 'route', 'ip', 'add', '--vnet', 'site', '198.18.0.0/24', 'site']);
  await oxyOk(home, ['edge', 'init', '--ip', '198.18.1.1']);
};
const siteHome = sharedHome((home) => siteStore(home, ['the private site']));
const deviceNetsHome = sharedHome((home) => siteStore(home, []));

export async function startVnetSite(
  o: {
    /** More `edge run` flags (a function: given the data directory). */
    edgeArgs?: string[] | ((home: string) => string[]);
    protocol?: 'http2' | 'quic';
    deviceRoutes?: string[];
    /** More `warp connect` flags. */
    warpArgs?: string[];
    /** More `tunnel run` flags for the connector in the data centre. */
    connectorArgs?: string[];
    /** More environment for every process of the site (edge, connector, device, host). */
    env?: Record<string, string>;
    /** More environment for the connector only (e.g. OXY_TCP_FLOWS=0: a connector that does not announce tcp-flows/1). */
    connectorEnv?: Record<string, string>;
    /** More `warp-routing` settings of the connector's config, one `key: value` each (e.g. `tcpKeepAlive: 2s`). */
    warpRouting?: string[];
    /** Runs before the edge starts (e.g. `warp enroll`), with the data directory. */
    beforeEdge?: (home: string) => Promise<void>;
  } = {},
): Promise<VnetSite> {
  const { home, cleanup } = await siteHome();
  const spaces: TestNetns[] = [];
  const procs: NsProcess[] = [];
  const env = { ...process.env, ...o.env, OXY_HOME: home, NO_COLOR: '1', ...storeEnv(home) };
  const spawnIn = (ns: TestNetns, command: string, args: string[], more?: Record<string, string>) => {
    const p = new NsProcess(ns.spawn(command, args, { env: more ? { ...env, ...more } : env, stdio: ['ignore', 'pipe', 'pipe'] }));
    procs.push(p);
    return p;
  };
  const close = async () => {
    await Promise.all(procs.reverse().map((p) => p.stop()));
    for (const ns of spaces) ns.delete();
    cleanup();
  };
  try {
    const socketPath = join(home, 'ip-tunnel.sock');
    const edgeNs = TestNetns.create('oxyedge');
    const dc = TestNetns.create('oxydc');
    const device = TestNetns.create('oxydev');
    spaces.push(edgeNs, dc, device);
    edgeNs.veth('to-dc', dc, 'to-edge');
    edgeNs.ip('addr', 'add', '198.18.1.1/30', 'dev', 'to-dc');
    dc.ip('addr', 'add', '198.18.1.2/30', 'dev', 'to-edge');
    dc.ip('addr', 'add', '198.18.0.10/32', 'dev', 'lo');

    await o.beforeEdge?.(home);
    const edge = spawnIn(edgeNs, process.execPath, [
      BIN,
      'edge',
      'run',
      '--tunnel-listen',
      '0.0.0.0:7844',
      '--http-listen',
      '127.0.0.1:0',
      '--metrics',
      `127.0.0.1:${SITE_METRICS_PORT}`,
      '--ip-tunnel-listen',
      socketPath,
      ...(typeof o.edgeArgs === 'function' ? o.edgeArgs(home) : (o.edgeArgs ?? [])),
    ]);
    await edge.waitFor(/IP tunnel on-ramp ready/);
    const config = join(home, 'connector.yml');
    writeFileSync(config, ['warp-routing:', '  enabled: true', '  connectTimeout: 2s', ...(o.warpRouting ?? []).map((l) => `  ${l}`), ''].join('\n'));
    const connector = spawnIn(
      dc,
      process.execPath,
      [
        BIN,
        'tunnel',
        'run',
        '--protocol',
        o.protocol ?? 'http2',
        '--edge',
        '198.18.1.1:7844',
        '--config',
        config,
        '--ha-connections',
        '1',
        ...(o.connectorArgs ?? []),
        'site',
      ],
      o.connectorEnv,
    );
    await connector.waitFor(/Registered tunnel connection connIndex=0 /);
    const warp = spawnIn(device, process.execPath, [
      BIN,
      'warp',
      'connect',
      '--vnet',
      'site',
      '--edge',
      socketPath,
      ...['198.18.0.0/24', ...(o.deviceRoutes ?? [])].flatMap((r) => ['--route', r]),
      ...(o.warpArgs ?? []),
    ]);
    await warp.waitFor(/Connected to the edge/);
    const inDevice: VnetSite['inDevice'] = (command, args, opts = {}) =>
      new Promise((resolve) => {
        const child = execFile(
          'ip',
          ['netns', 'exec', device.name, command, ...args],
          { timeout: opts.timeoutMs ?? 20_000, encoding: 'utf8' },
          (err, stdout, stderr) =>
            resolve({ code: err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0, stdout, stderr }),
        );
        if (opts.input !== undefined) child.stdin?.end(opts.input);
        else child.stdin?.end();
      });
    return { home, edgeNs, dc, device, edge, connector, warp, inDevice, spawnIn, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** The hosts of a device reaching a site through edges over veths, before any process runs. */
export interface DeviceNets {
  home: string;
  env: Record<string, string | undefined>;
  edges: TestNetns;
  dc: TestNetns;
  device: TestNetns;
  /** The connector's config file (warp-routing on, connectTimeout 2s). */
  connectorConfig: string;
  /** Starts `node ARGS` in a namespace with env; stopped by close(). */
  spawnIn(ns: TestNetns, args: string[]): NsProcess;
  /** Runs a command in the device namespace: its stdout, or '' when it failed. */
  inDevice(command: string, args: string[]): Promise<string>;
  /**
   * `edge run` in the edges namespace on 198.18.1.1:PORT (IP on-ramp at HOME/NAME.sock, HTTP and
   * metrics on loopback) with `more` flags, once its output matches `running`.
   */
  startEdge(name: string, port: number, more: string[], running?: RegExp, timeoutMs?: number): Promise<NsProcess>;
  /** The site's servers in the dc namespace: HTTP on :80 (a 1 MiB answer on /big), with `udpEcho` a UDP echo on :53. */
  startSite(o?: { udpEcho?: boolean }): NsProcess;
  /** Waits until the device reaches the site over TCP, then fetches /big: the bytes it got. */
  siteBigAnswer(): Promise<number>;
  /** `tunnel run` of tunnel "site" in the dc namespace with the connector config (not awaited). */
  startConnector(protocol: 'http2' | 'quic', edges: string[], haConnections: number): NsProcess;
  close(): Promise<void>;
}

/**
 * device ns ──veth 198.18.2.0/30── edges ns ──veth 198.18.1.0/30── dc ns (hosts 198.18.0.10 + dcHosts on lo),
 * the device routed to 198.18.1.0/30 through the edges; a store with vnet "site", tunnel "site"
 * serving 198.18.0.0/24 and `edge init --ip 198.18.1.1`. Namespace names: [edges, dc, device].
 */
export async function startDeviceNets(names: [string, string, string], o: { env?: Record<string, string>; dcHosts?: string[] } = {}): Promise<DeviceNets> {
  const { home, cleanup } = await deviceNetsHome();
  const spaces: TestNetns[] = [];
  const procs: NsProcess[] = [];
  const env = { ...process.env, OXY_HOME: home, NO_COLOR: '1', ...storeEnv(home), ...o.env };
  const close = async () => {
    await Promise.all(procs.reverse().map((p) => p.stop()));
    for (const ns of spaces) ns.delete();
    cleanup();
  };
  try {
    const edges = TestNetns.create(names[0]);
    const dc = TestNetns.create(names[1]);
    const device = TestNetns.create(names[2]);
    spaces.push(edges, dc, device);
    edges.veth('to-dc', dc, 'to-edge');
    edges.ip('addr', 'add', '198.18.1.1/30', 'dev', 'to-dc');
    dc.ip('addr', 'add', '198.18.1.2/30', 'dev', 'to-edge');
    for (const host of ['198.18.0.10', ...(o.dcHosts ?? [])]) dc.ip('addr', 'add', `${host}/32`, 'dev', 'lo');
    edges.veth('to-dev', device, 'to-edges');
    edges.ip('addr', 'add', '198.18.2.1/30', 'dev', 'to-dev');
    device.ip('addr', 'add', '198.18.2.2/30', 'dev', 'to-edges');
    device.ip('route', 'add', '198.18.1.0/30', 'via', '198.18.2.1');

    const connectorConfig = join(home, 'connector.yml');
    writeFileSync(connectorConfig, 'warp-routing:\n  enabled: true\n  connectTimeout: 2s\n');
    const spawnIn = (ns: TestNetns, args: string[]) => {
      const p = new NsProcess(ns.spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] }));
      procs.push(p);
      return p;
    };
    const inDevice = (command: string, args: string[]) =>
      new Promise<string>((resolve) =>
        execFile('ip', ['netns', 'exec', device.name, command, ...args], { encoding: 'utf8', timeout: 10_000 }, (err, stdout) =>
          resolve(err ? '' : stdout.trim()),
        ),
      );
    // 45 s: an edge on PostgreSQL took over 20 s to say it runs at load 25 (a bound, not a speed).
    const startEdge: DeviceNets['startEdge'] = async (name, port, more, running = /Edge running/, timeoutMs = 45_000) => {
      const edge = spawnIn(edges, [
        ...[BIN, 'edge', 'run', '--tunnel-listen', `198.18.1.1:${port}`, ...more],
        ...['--http-listen', '127.0.0.1:0', '--metrics', '127.0.0.1:0', '--ip-tunnel-listen', join(home, `${name}.sock`)],
      ]);
      await edge.waitFor(running, timeoutMs);
      return edge;
    };
    const startConnector: DeviceNets['startConnector'] = (protocol, edgeAddrs, haConnections) =>
      spawnIn(dc, [
        ...[BIN, 'tunnel', 'run', '--protocol', protocol, ...edgeAddrs.flatMap((e) => ['--edge', e])],
        ...['--config', connectorConfig, '--ha-connections', String(haConnections), 'site'],
      ]);
    const startSite: DeviceNets['startSite'] = (so = {}) =>
      spawnIn(dc, [
        '-e',
        [
          "const big = Buffer.alloc(1 << 20, 'z');",
          "require('http').createServer((q, s) => s.end(q.url === '/big' ? big : 'site ' + q.socket.localAddress + '\\n')).listen(80, '0.0.0.0');",
          ...(so.udpEcho
            ? [
                "const u = require('dgram').createSocket('udp4'); u.on('message', (m, r) => u.send(Buffer.concat([Buffer.from('echo '), m]), r.port, r.address)); u.bind(53, '0.0.0.0');",
              ]
            : []),
        ].join('\n'),
      ]);
    const siteBigAnswer = async () => {
      await until(
        async () => (await inDevice('curl', ['-s', '-m', '2', 'http://198.18.0.10/'])) === 'site 198.18.0.10',
        15_000,
        'the device to reach the site',
      );
      return Number(await inDevice('curl', ['-s', '-m', '5', '-o', '/dev/null', '-w', '%{size_download}', 'http://198.18.0.10/big']));
    };
    return { home, env, edges, dc, device, connectorConfig, spawnIn, inDevice, startEdge, startSite, siteBigAnswer, startConnector, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** A vnet site whose dc namespace runs `hostScript` (node -e) as its host, listening before this resolves. */
export async function startVnetSiteWithHost(hostScript: string, options?: Parameters<typeof startVnetSite>[0]): Promise<{ site: VnetSite; host: NsProcess }> {
  const site = await startVnetSite(options);
  const host = site.spawnIn(site.dc, process.execPath, ['-e', hostScript]);
  await host.waitFor(/listening/);
  return { site, host };
}
