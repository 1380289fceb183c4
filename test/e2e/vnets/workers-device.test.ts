/**
 * The IP path under `edge run --workers 2` (the default with a CA key): a device
 * (`warp connect --token`) whose connection sits on one worker reaches a site whose connector's
 * connection sits on the other, through the workers' private peer listeners. Real processes
 * in namespaces made and deleted here:
 *
 *   device ns ──veth 198.18.2.0/30── edge ns (one edge, 2 workers, :7844) ──veth 198.18.1.0/30── dc ns (connector, host 198.18.0.10)
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BIN, oxyOk, storeEnv, tempHome } from '../../helpers/cli.js';
import { TestNetns } from '../../helpers/netns.js';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { until } from '../../helpers/until.js';
import { NsProcess } from '../../helpers/vnet-site.js';

privilegedDescribe('a device on one edge worker reaching a site whose connector is on the other worker', () => {
  let home: string;
  let cleanup: () => void;
  let env: Record<string, string | undefined>;
  const spaces: TestNetns[] = [];
  const procs: NsProcess[] = [];
  let device: TestNetns;
  let edge: NsProcess;
  const spawnIn = (ns: TestNetns, args: string[]) => {
    const p = new NsProcess(ns.spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] }));
    procs.push(p);
    return p;
  };
  const inDevice = (cmd: string, args: string[]) =>
    new Promise<string>((resolve) =>
      execFile('ip', ['netns', 'exec', device.name, cmd, ...args], { encoding: 'utf8', timeout: 10_000 }, (err, stdout) => resolve(err ? '' : stdout.trim())),
    );

  beforeAll(async () => {
    ({ home, cleanup } = tempHome());
    env = { ...process.env, OXY_HOME: home, NO_COLOR: '1', ...storeEnv(home) };
    const edges = TestNetns.create('oxywrke');
    const dc = TestNetns.create('oxywrkc');
    device = TestNetns.create('oxywrkd');
    spaces.push(edges, dc, device);
    edges.veth('to-dc', dc, 'to-edge');
    edges.ip('addr', 'add', '198.18.1.1/30', 'dev', 'to-dc');
    dc.ip('addr', 'add', '198.18.1.2/30', 'dev', 'to-edge');
    dc.ip('addr', 'add', '198.18.0.10/32', 'dev', 'lo');
    edges.veth('to-dev', device, 'to-edges');
    edges.ip('addr', 'add', '198.18.2.1/30', 'dev', 'to-dev');
    device.ip('addr', 'add', '198.18.2.2/30', 'dev', 'to-edges');
    device.ip('route', 'add', '198.18.1.0/30', 'via', '198.18.2.1');

    await oxyOk(home, ['vnet', 'add', '--default', 'site']);
    await oxyOk(home, ['tunnel', 'create', 'site']);
    await oxyOk(home, ['tunnel', 'route', 'ip', 'add', '--vnet', 'site', '198.18.0.0/24', 'site']);
    await oxyOk(home, ['edge', 'init', '--ip', '198.18.1.1']);
    edge = spawnIn(edges, [
      BIN,
      ...['edge', 'run', '--workers', '2', '--tunnel-listen', '198.18.1.1:7844', '--advertise', '198.18.1.1:7844'],
      ...['--http-listen', '127.0.0.1:0', '--metrics', '127.0.0.1:0', '--ip-tunnel-listen', join(home, 'edge.sock')],
    ]);
    await edge.waitFor(/Edge running .*workers=2/, 30_000);
    const token = (await oxyOk(home, ['warp', 'enroll', 'laptop'])).trim();
    spawnIn(dc, [
      '-e',
      `const big = Buffer.alloc(1 << 20, 'z');
       require('http').createServer((q, s) => s.end(q.url === '/big' ? big : 'site ' + q.socket.localAddress + '\\n')).listen(80, '0.0.0.0');`,
    ]);
    const warp = spawnIn(device, [BIN, 'warp', 'connect', '--token', token, '--protocol', 'http2', '--edge', '198.18.1.1:7844']);
    await warp.waitFor(/Connected to the edge/);
    const deviceWorker = (await edge.waitFor(/Device connected worker=(\d)/))[1];
    const config = join(home, 'connector.yml');
    writeFileSync(config, 'warp-routing:\n  enabled: true\n  connectTimeout: 2s\n');
    // The kernel picks the worker of each connection (SO_REUSEPORT): redial until the
    // connector's one connection sits on the worker the device is not on (½ a try).
    for (let attempt = 0; ; attempt++) {
      const seen = (edge.output.match(/Registered tunnel connection worker=\d/g) ?? []).length;
      const connector = spawnIn(dc, [
        BIN,
        'tunnel',
        'run',
        '--protocol',
        'quic',
        '--edge',
        '198.18.1.1:7844',
        '--config',
        config,
        '--ha-connections',
        '1',
        'site',
      ]);
      await connector.waitFor(/Registered tunnel connection connIndex=0 /);
      await until(async () => (edge.output.match(/Registered tunnel connection worker=\d/g) ?? []).length > seen, 5000, 'the edge to log the registration');
      const worker = [...edge.output.matchAll(/Registered tunnel connection worker=(\d)/g)].at(-1)![1];
      if (worker !== deviceWorker) break;
      if (attempt === 12) throw new Error('the connector never landed on the other worker');
      await connector.stop();
    }
  }, 60_000);

  afterAll(async () => {
    await Promise.all(procs.reverse().map((p) => p.stop()));
    for (const ns of spaces) ns.delete();
    cleanup?.();
  });

  it('TCP and ping reach the site across the workers; a 1 MiB answer byte-exact', async () => {
    await until(async () => (await inDevice('curl', ['-s', '-m', '2', 'http://198.18.0.10/'])) === 'site 198.18.0.10', 15_000, 'the device to reach the site');
    const size = await inDevice('curl', ['-s', '-m', '5', '-o', '/dev/null', '-w', '%{size_download}', 'http://198.18.0.10/big']);
    expect(size).toBe(String(1 << 20));
    expect(await inDevice('ping', ['-c', '1', '-W', '3', '198.18.0.10'])).toMatch(/1 received/);
    expect(edge.output).toMatch(/Peer link to edge open worker=\d/);
  });
});
