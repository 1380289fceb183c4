/**
 * The "many private virtual networks" walkthrough, for real: two data centres with a host
 * at the same address (198.18.0.10), each behind its own tunnel, routed in two vnets; a
 * device whose traffic goes to the edge through `warp connect`. Every host is a network
 * namespace this test makes and deletes.
 *
 *   device ns ──(SEQPACKET, a file path)── edge ns ──veth 198.18.1.0/30── dc1 ns (connector, host 198.18.0.10 "dc1")
 *                                                  └─veth 198.18.2.0/30── dc2 ns (connector, host 198.18.0.10 "dc2")
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BIN, oxyOk, storeEnv, tempHome } from '../../helpers/cli.js';
import { TestNetns } from '../../helpers/netns.js';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { until } from '../../helpers/until.js';
import { NsProcess } from '../../helpers/vnet-site.js';

const run = promisify(execFile);

/** A host at 198.18.0.10 (plus any extra address) answering HTTP and UDP with its name. */
const HOST_SERVER = `
const name = process.argv[1];
require('http').createServer((q, s) => s.end(name + '\\n')).listen(80, '0.0.0.0');
const u = require('dgram').createSocket('udp4');
u.on('message', (m, r) => u.send(Buffer.from(name + ':' + m), r.port, r.address));
u.bind(5353, '0.0.0.0', () => console.log('host ready'));
`;

privilegedDescribe('vnets end to end: same IP in two data centres, picked by the device vnet', () => {
  let home: string;
  let cleanup: () => void;
  const spaces: TestNetns[] = [];
  const procs: NsProcess[] = [];
  let device: TestNetns;
  let remote: TestNetns;
  let warp: NsProcess | undefined;
  let socketPath: string;
  /** The edge and the connectors: they must stay up whatever devices send. */
  const daemons: NsProcess[] = [];
  const env = () => ({ ...process.env, OXY_HOME: home, NO_COLOR: '1', ...storeEnv(home) });
  const oxyIn = (ns: TestNetns, args: string[]) => {
    const p = new NsProcess(ns.spawn(process.execPath, [BIN, ...args], { env: env(), stdio: ['ignore', 'pipe', 'pipe'] }));
    procs.push(p);
    return p;
  };
  const curl = (url: string, timeout = 5) =>
    run('ip', ['netns', 'exec', device.name, 'curl', '-sS', '--max-time', String(timeout), url]).then(
      (r) => ({ ok: true, out: r.stdout }),
      (e: { stderr?: string; code?: number }) => ({ ok: false, out: e.stderr ?? '', code: e.code }),
    );
  const udp = (ip: string, text: string) =>
    run('ip', [
      'netns',
      'exec',
      device.name,
      process.execPath,
      '-e',
      `
      const s = require('dgram').createSocket('udp4');
      s.on('message', (m) => { console.log(String(m)); process.exit(0); });
      s.send('${text}', 5353, '${ip}');
      setTimeout(() => process.exit(2), 3000);`,
    ]).then((r) => r.stdout.trim());
  const ping = (ip: string) =>
    run('ip', ['netns', 'exec', device.name, 'ping', '-c', '2', '-i', '0.2', '-W', '2', ip]).then(
      (r) => /2 received/.test(r.stdout),
      () => false,
    );
  // How a connect ends, and in how many ms (timed in the device, so a slow start of node under
  // load does not count).
  const connectError = (ip: string) =>
    run('ip', [
      'netns',
      'exec',
      device.name,
      process.execPath,
      '-e',
      `
      const t0 = Date.now();
      require('net').connect(80, '${ip}').on('connect', () => { console.log('connected'); process.exit(0); })
        .on('error', (e) => { console.log(e.code + ' ' + (Date.now() - t0)); process.exit(0); });
      setTimeout(() => { console.log('timeout 8000'); process.exit(0); }, 8000);`,
    ]).then((r) => {
      const [code, ms] = r.stdout.trim().split(' ');
      return { code, ms: Number(ms) };
    });
  const connectWarp = async (vnet: string, routes: string[]) => {
    await warp?.stop();
    warp = oxyIn(device, ['warp', 'connect', '--vnet', vnet, '--edge', socketPath, ...routes.flatMap((r) => ['--route', r])]);
    await warp.waitFor(/Connected to the edge/);
  };

  beforeAll(async () => {
    ({ home, cleanup } = tempHome());
    socketPath = join(home, 'ip-tunnel.sock');
    const edge = TestNetns.create('oxyedge');
    const dc1 = TestNetns.create('oxydc1');
    const dc2 = TestNetns.create('oxydc2');
    device = TestNetns.create('oxydev');
    remote = TestNetns.create('oxyrem');
    spaces.push(edge, dc1, dc2, device, remote);
    // A device on another host: it reaches the edge's tunnel listener over a link.
    edge.veth('to-rem', remote, 'to-edge');
    edge.ip('addr', 'add', '198.18.6.1/30', 'dev', 'to-rem');
    remote.ip('addr', 'add', '198.18.6.2/30', 'dev', 'to-edge');
    edge.veth('to-dc1', dc1, 'to-edge');
    edge.veth('to-dc2', dc2, 'to-edge');
    edge.ip('addr', 'add', '198.18.1.1/30', 'dev', 'to-dc1');
    edge.ip('addr', 'add', '198.18.2.1/30', 'dev', 'to-dc2');
    for (const [dc, n, name] of [
      [dc1, 1, 'dc1'],
      [dc2, 2, 'dc2'],
    ] as const) {
      dc.ip('addr', 'add', `198.18.${n}.2/30`, 'dev', 'to-edge');
      dc.ip('addr', 'add', '198.18.0.10/32', 'dev', 'lo');
      dc.ip('addr', 'add', '198.18.3.3/32', 'dev', 'lo');
      // Only data centre 1 has .11: a ping tells the two data centres apart.
      if (n === 1) dc.ip('addr', 'add', '198.18.0.11/32', 'dev', 'lo');
      const host = new NsProcess(dc.spawn(process.execPath, ['-e', HOST_SERVER, name], { stdio: ['ignore', 'pipe', 'pipe'] }));
      procs.push(host);
      await host.waitFor(/host ready/);
    }

    await oxyOk(home, ['vnet', 'add', '--default', 'vnet-frankfurt', 'For London and Munich employees primarily']);
    await oxyOk(home, ['vnet', 'add', 'vnet-sydney', 'For APAC employees primarily']);
    await oxyOk(home, ['tunnel', 'create', 'tunnel-fra']);
    await oxyOk(home, ['tunnel', 'create', 'tunnel-syd']);
    await oxyOk(home, ['tunnel', 'route', 'ip', 'add', '--vnet', 'vnet-frankfurt', '198.18.0.0/24', 'tunnel-fra']);
    await oxyOk(home, ['tunnel', 'route', 'ip', 'add', '--vnet', 'vnet-sydney', '198.18.0.0/24', 'tunnel-syd']);
    // Only Frankfurt routes 198.18.3.0/24: Sydney devices must never reach it.
    await oxyOk(home, ['tunnel', 'route', 'ip', 'add', '--vnet', 'vnet-frankfurt', '198.18.3.0/24', 'tunnel-fra']);
    await oxyOk(home, ['edge', 'init', '--ip', '198.18.1.1', '--ip', '198.18.2.1', '--ip', '198.18.6.1', '--advertise', '198.18.6.1:7844']);

    const edgeRun = oxyIn(edge, [
      'edge',
      'run',
      '--tunnel-listen',
      '0.0.0.0:7844',
      '--http-listen',
      '127.0.0.1:0',
      '--metrics',
      '127.0.0.1:0',
      '--ip-tunnel-listen',
      socketPath,
    ]);
    await edgeRun.waitFor(/IP tunnel on-ramp ready/);
    daemons.push(edgeRun);
    const config = join(home, 'connector.yml');
    writeFileSync(config, 'warp-routing:\n  enabled: true\n  connectTimeout: 2s\n');
    // Data centre 1 connects over HTTP/2, data centre 2 over QUIC: UDP payloads travel as
    // stream records on one and as QUIC DATAGRAM frames on the other.
    for (const [dc, n, tunnel, protocol] of [
      [dc1, 1, 'tunnel-fra', 'http2'],
      [dc2, 2, 'tunnel-syd', 'quic'],
    ] as const) {
      const c = oxyIn(dc, ['tunnel', 'run', '--protocol', protocol, '--edge', `198.18.${n}.1:7844`, '--config', config, '--ha-connections', '2', tunnel]);
      await c.waitFor(/Registered tunnel connection connIndex=1 /);
      daemons.push(c);
    }
    // Four namespaces, 8 CLI runs, an edge and two connectors: past 120 s on the postgres leg at load 13.
  }, 240_000);

  afterAll(async () => {
    await Promise.all([warp, ...procs].map((p) => p?.stop()));
    for (const ns of spaces) ns.delete();
    cleanup?.();
  });

  it('a device in vnet-sydney reaches data centre 2 (HTTP, UDP and ping)', async () => {
    await connectWarp('vnet-sydney', ['198.18.0.0/24', '198.18.3.0/24', '198.18.7.0/24']);
    expect(await curl('http://198.18.0.10/')).toEqual({ ok: true, out: 'dc2\n' });
    expect(await udp('198.18.0.10', 'ping')).toBe('dc2:ping');
    expect(await ping('198.18.0.10')).toBe(true);
    expect(await ping('198.18.0.11')).toBe(false); // only data centre 1 has it
    const status = await oxyOk(home, ['warp', 'status']);
    expect(status).toContain('Virtual network: vnet-sydney');
  });

  it('never reaches a host routed only in another vnet, and gets unreachable (not a hang) without a route', async () => {
    const isolated = await curl('http://198.18.3.3/', 5);
    expect(isolated.ok).toBe(false);
    // The edge answers with ICMP destination unreachable: the device's kernel fails the
    // connect at once with that error, instead of retrying SYNs into silence.
    for (const ip of ['198.18.7.7', '198.18.3.3']) {
      const { code, ms } = await connectError(ip);
      expect({ ip, code }).toEqual({ ip, code: expect.stringMatching(/^(ENETUNREACH|EHOSTUNREACH)$/) });
      // Not after SYN retries (the first one is 1 s after the SYN, the kernel gives up after minutes).
      expect(ms).toBeLessThan(3000);
    }
  });

  it('switching the device to vnet-frankfurt reaches data centre 1', async () => {
    await connectWarp('vnet-frankfurt', ['198.18.0.0/24', '198.18.3.0/24']);
    expect(await curl('http://198.18.0.10/')).toEqual({ ok: true, out: 'dc1\n' });
    expect(await curl('http://198.18.3.3/')).toEqual({ ok: true, out: 'dc1\n' });
    expect(await udp('198.18.0.10', 'hello')).toBe('dc1:hello');
    expect(await ping('198.18.0.11')).toBe(true);
  });

  it('route changes made with the CLI reach the running edge, without a restart', async () => {
    // Every connector is still up: nothing the device sent (pings to missing hosts included) broke one.
    for (const p of daemons) expect(p.child.exitCode).toBeNull();
    // Each change is waited for (bounded), not slept on: under load a store reload or a curl
    // spawn alone can take longer than the second an idle machine needs.
    await oxyOk(home, ['tunnel', 'route', 'ip', 'delete', '--yes', '--vnet', 'vnet-frankfurt', '198.18.3.0/24']);
    await until(async () => !(await curl('http://198.18.3.3/', 5)).ok, 20_000, 'the deleted route to stop answering');
    // Moved to Sydney's tunnel in Frankfurt's vnet: now dc2 answers for this device.
    await oxyOk(home, ['tunnel', 'route', 'ip', 'add', '--vnet', 'vnet-frankfurt', '198.18.3.0/24', 'tunnel-syd']);
    await until(async () => (await curl('http://198.18.3.3/', 5)).ok, 20_000, 'the added route to answer');
    expect(await curl('http://198.18.3.3/')).toEqual({ ok: true, out: 'dc2\n' });
  });

  it('a device on another host, enrolled with a token, reaches its vnet over the tunnel transport', async () => {
    const token = (await oxyOk(home, ['warp', 'enroll', 'laptop'])).trim();
    for (const protocol of ['http2', 'quic']) {
      const w = oxyIn(remote, [
        'warp',
        'connect',
        '--token',
        token,
        '--protocol',
        protocol,
        '--vnet',
        'vnet-sydney',
        '--route',
        '198.18.0.0/24',
        '--tun',
        'oxyrem0',
      ]);
      await w.waitFor(/Connected to the edge/);
      const r = await run('ip', ['netns', 'exec', remote.name, 'curl', '-sS', '--max-time', '5', 'http://198.18.0.10/']);
      expect(r.stdout).toBe('dc2\n');
      await w.stop();
    }
    // A forged token (another secret) is refused by the edge.
    const forged = JSON.parse(Buffer.from(token, 'base64').toString());
    forged.s = Buffer.alloc(32, 7).toString('base64');
    const bad = oxyIn(remote, [
      'warp',
      'connect',
      '--token',
      Buffer.from(JSON.stringify(forged)).toString('base64'),
      '--protocol',
      'http2',
      '--route',
      '198.18.0.0/24',
      '--tun',
      'oxyrem1',
    ]);
    await bad.waitFor(/Unauthorized: Invalid tunnel secret/);
    // A revoked device is refused at its next registration.
    await oxyOk(home, ['warp', 'revoke', '--yes', 'laptop']);
    const revoked = oxyIn(remote, ['warp', 'connect', '--token', token, '--protocol', 'http2', '--route', '198.18.0.0/24', '--tun', 'oxyrem2']);
    await revoked.waitFor(/Unauthorized: Invalid tunnel secret/);
  });

  it('a local device without --route follows its vnet routes as the store changes (warp status too)', async () => {
    await connectWarp('vnet-sydney', []);
    await warp!.waitFor(/Connected to the edge .*routes=198\.18\.0\.0\/24\n/);
    await oxyOk(home, ['tunnel', 'route', 'ip', 'add', '--vnet', 'vnet-sydney', '198.18.4.0/24', 'tunnel-syd']);
    await warp!.waitFor(/Routes updated routes=198\.18\.0\.0\/24,198\.18\.4\.0\/24/);
    expect(device.ip('route', 'show', 'dev', 'oxywarp0')).toContain('198.18.4.0/24');
    expect(await oxyOk(home, ['warp', 'status'])).toContain('Routes: 198.18.0.0/24, 198.18.4.0/24');
    await oxyOk(home, ['tunnel', 'route', 'ip', 'delete', '--yes', '--vnet', 'vnet-sydney', '198.18.4.0/24']);
    await warp!.waitFor(/Routes updated routes=198\.18\.0\.0\/24\n/);
    expect(device.ip('route', 'show', 'dev', 'oxywarp0')).not.toContain('198.18.4.0/24');
  });

  it('a remote device without --route follows its vnet routes from the edge, and is cut off when revoked', async () => {
    const token = (await oxyOk(home, ['warp', 'enroll', 'tablet'])).trim();
    const w = oxyIn(remote, ['warp', 'connect', '--token', token, '--protocol', 'quic', '--vnet', 'vnet-sydney', '--tun', 'oxyrem3']);
    await w.waitFor(/Connected to the edge .*routes=198\.18\.0\.0\/24\n/);
    const r = await run('ip', ['netns', 'exec', remote.name, 'curl', '-sS', '--max-time', '5', 'http://198.18.0.10/']);
    expect(r.stdout).toBe('dc2\n');
    const steered = () => remote.ip('route', 'show', 'dev', 'oxyrem3');
    await oxyOk(home, ['tunnel', 'route', 'ip', 'add', '--vnet', 'vnet-sydney', '198.18.4.0/24', 'tunnel-syd']);
    await w.waitFor(/Routes updated routes=198\.18\.0\.0\/24,198\.18\.4\.0\/24/);
    expect(steered()).toContain('198.18.4.0/24');
    await oxyOk(home, ['tunnel', 'route', 'ip', 'delete', '--yes', '--vnet', 'vnet-sydney', '198.18.4.0/24']);
    await w.waitFor(/Routes updated routes=198\.18\.0\.0\/24\n/);
    expect(steered()).not.toContain('198.18.4.0/24');
    // Revoked while connected: the edge closes the device's connection at its next store reload.
    await oxyOk(home, ['warp', 'revoke', '--yes', 'tablet']);
    await w.waitFor(/The edge closed the IP tunnel: device revoked/, 5000);
    expect(await new Promise((resolve) => (w.child.exitCode !== null ? resolve(w.child.exitCode) : w.child.once('exit', resolve)))).not.toBe(0);
  });
});
