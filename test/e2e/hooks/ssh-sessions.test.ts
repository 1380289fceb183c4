/**
 * examples/ssh-sessions.js with real programs: OpenSSH's ssh in a client namespace whose
 * traffic to 198.18.3.0/24 goes as IP packets (device TUN → SEQPACKET) into an IP edge with
 * the example's hooks; the edge terminates SSH, logs the session and logs in to a real sshd
 * with a session certificate, over a stream downgraded to IP packets that a TUN in the
 * destination namespace hands to that namespace's kernel.
 *
 *   client ns                 edge (this process)                         destination ns
 *   ssh → oxdev0 198.18.1.1 ─ SEQPACKET ─ upgrade → hooks → downgrade ─ oxdst0 198.18.3.3 → sshd
 *        oxsshc 198.18.4.1 ──────────────────── veth ──────────────────── oxsshd 198.18.4.2 ┘
 *
 * The veth is the direct path: the destination refuses the client's own key (only the CA
 * counts there), and `ssh host true` over it is the baseline of the timing test.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { useNetns, type TestNetns } from '../../helpers/netns.js';
import { NsProcess, startVnetSite, type VnetSite } from '../../helpers/vnet-site.js';
import { attachDevice, type Device } from '../ip/device.js';
import { EXAMPLES, logSink } from './support.js';
import { tempHome } from '../../helpers/cli.js';
import { IpEdge, SeqpacketOnRamp } from '../../../src/engine/edge/ip/index.js';
import { TcpDowngrader } from '../../../src/engine/netns/index.js';
import { Tun, withNetns } from '../../../src/engine/native/index.js';
import { HOOK_ORDER, HookRunner, HookTrace, loadHooks, validateHooks, type IpOffRamp } from '../../../src/engine/hooks/index.js';
import { Egress, withIpHooks, type FlowContexts } from '../../../src/engine/edge/pipeline/index.js';
// @ts-expect-error plain JS example
import { sshHooks } from '../../../examples/ssh-sessions.js';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

const keygen = (path: string, ...extra: string[]) => execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', path, '-f', path, ...extra]);
const fingerprintOf = (pub: string) => execFileSync('ssh-keygen', ['-l', '-f', pub], { encoding: 'utf8' }).split(' ')[1];

/** ssh's options for the tests: nothing from ~/.ssh or /etc/ssh, host keys only from `knownHosts`. */
const sshOptions = (knownHosts: string) => [
  '-F',
  '/dev/null',
  '-o',
  'BatchMode=yes',
  '-o',
  'IdentitiesOnly=yes',
  '-o',
  `UserKnownHostsFile=${knownHosts}`,
  '-o',
  'GlobalKnownHostsFile=/dev/null',
  '-o',
  'StrictHostKeyChecking=yes',
  '-o',
  'ConnectTimeout=10',
];

/**
 * OpenSSH's sshd in `ns` on `addresses`, host key `dir`/dst_host (made here), letting in only
 * users with a certificate of the CA `caPub` (no authorized_keys at all).
 */
async function startSshd(ns: TestNetns, dir: string, addresses: string[], caPub: string): Promise<NsProcess> {
  keygen(join(dir, 'dst_host'));
  const config = join(dir, 'sshd_config');
  writeFileSync(
    config,
    [
      ...addresses.map((a) => `ListenAddress ${a}`),
      `HostKey ${join(dir, 'dst_host')}`,
      'PidFile none',
      'UsePAM no',
      'PermitRootLogin prohibit-password',
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'AuthorizedKeysFile none',
      `TrustedUserCAKeys ${caPub}`,
      'PrintMotd no',
      'PrintLastLog no',
      'Subsystem sftp internal-sftp',
      'LogLevel VERBOSE',
      '',
    ].join('\n'),
  );
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 }); // sshd's privilege separation directory
  const sshd = new NsProcess(ns.spawn('/usr/sbin/sshd', ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] }));
  for (const a of addresses) await sshd.waitFor(new RegExp(`Server listening on ${a.replace(/\./g, '\\.')} port 22`), 10_000);
  return sshd;
}

/**
 * Stops sshd and the session processes it forked: they outlive it, and one whose client
 * vanished with the test's namespaces would wait for TCP keepalive (hours).
 */
async function stopSshd(ns: TestNetns | undefined, sshd: NsProcess | undefined): Promise<void> {
  await sshd?.stop();
  if (!ns) return;
  for (const pid of execFileSync('ip', ['netns', 'pids', ns.name], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number)) {
    try {
      if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'sshd') process.kill(pid, 'SIGTERM');
    } catch {
      // Gone meanwhile.
    }
  }
}

privilegedDescribe('examples/ssh-sessions.js: real ssh → edge (SSH terminated, commands logged) → downgrade → real sshd', () => {
  const client = useNetns('oxy-sshcli');
  const dest = useNetns('oxy-sshdst');
  const logs = logSink();
  const trace = new HookTrace();
  const path = `\0oxy-ssh-test-${process.pid}-${randomBytes(4).toString('hex')}`;
  let dir = '';
  let edge: IpEdge | undefined;
  let onRamp: SeqpacketOnRamp | undefined;
  let device: Device | undefined;
  let downgrader: TcpDowngrader | undefined;
  let destTun: Tun | undefined;
  let sshd: NsProcess | undefined;

  const file = (name: string) => join(dir, name);
  /** OpenSSH's ssh (or sftp) in the client namespace. */
  const ssh = (args: string[], input = '', timeoutMs = 20_000, command = 'ssh'): Promise<Run> =>
    new Promise((resolve) => {
      const argv = ['netns', 'exec', client().name, command, ...sshOptions(file('known_hosts')), ...args];
      // Asynchronous: the edge runs on this event loop.
      const child = execFile('ip', argv, { timeout: timeoutMs, killSignal: 'SIGKILL', encoding: 'utf8' }, (_err, stdout, stderr) =>
        resolve({ code: child.exitCode, stdout, stderr }),
      );
      child.stdin?.end(input);
    });
  const viaEdge = (key: string, ...command: string[]) => ssh(['-i', file(key), 'root@198.18.3.3', ...command]);
  const direct = (...args: string[]) => ssh([...args, 'root@198.18.4.2', 'true']);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'oxy-ssh-sessions-'));
    for (const name of ['client', 'stranger', 'ca', 'edge_host']) keygen(file(name));
    // The client's own key with a certificate from the CA: the baseline's way in over the veth.
    // (Renamed: ssh would offer client-cert.pub next to client on its own, to the edge too.)
    execFileSync('ssh-keygen', ['-q', '-s', file('ca'), '-I', 'baseline', '-n', 'root', '-V', '-1m:+1h', file('client.pub')]);
    renameSync(file('client-cert.pub'), file('baseline.cert'));

    // Destination: a TUN for the downgraded packets, the veth, and sshd trusting only the CA.
    destTun = withNetns(dest().path, () => Tun.open({ name: 'oxdst0', mtu: 65000, txQueueLength: 5000, batchSize: 128 }));
    dest().ipBatch(['link set oxdst0 addrgenmode none', 'addr add 198.18.3.3/32 dev oxdst0', 'link set oxdst0 up', 'route add 198.18.1.0/24 dev oxdst0']);
    client().veth('oxsshc', dest(), 'oxsshd');
    client().ip('addr', 'add', '198.18.4.1/24', 'dev', 'oxsshc');
    dest().ip('addr', 'add', '198.18.4.2/24', 'dev', 'oxsshd');
    sshd = await startSshd(dest(), dir, ['198.18.3.3', '198.18.4.2'], file('ca.pub'));
    writeFileSync(file('known_hosts'), `198.18.3.3 ${readFileSync(file('edge_host.pub'), 'utf8')}198.18.4.2 ${readFileSync(file('dst_host.pub'), 'utf8')}`);

    // The off-ramp: downgraded packets into the destination's TUN, its replies back.
    const offRamp: IpOffRamp = {
      send: (packet) => {
        try {
          destTun!.write(Buffer.from(packet));
        } catch {
          // Refused by the kernel: lost, as on a link.
        }
      },
      onPacket: (receive) =>
        destTun!.on('packets', (batch) => {
          for (let i = 0; i < batch.count; i++) receive(Buffer.from(batch.packet(i)));
        }),
    };
    destTun.on('error', () => {});
    const hooks = sshHooks({
      offRamp,
      log: logs.log,
      hostKey: readFileSync(file('edge_host')),
      caKey: readFileSync(file('ca')),
      authorizedKeys: () => readFileSync(file('client.pub'), 'utf8'),
    });
    const runner = new HookRunner(validateHooks('ssh', hooks), { log: logs.log, trace });
    const flows: FlowContexts = new WeakMap();
    let edgeNs: IpEdge['ns'] | undefined;
    const egress = new Egress({
      runner,
      downgrader: async () => (downgrader ??= await TcpDowngrader.create({ ns: edgeNs, timeouts: { tcpCloseLingerMs: 200 } })),
    });
    edge = await IpEdge.create(withIpHooks(runner, { timeouts: { tcpCloseLingerMs: 200 } }, egress, flows));
    edgeNs = edge.ns;
    onRamp = new SeqpacketOnRamp(edge, path);
    device = attachDevice(client(), path, { tenant: 'acme', vnet: '' });
    client().ip('route', 'add', '198.18.3.0/24', 'dev', 'oxdev0');
  });

  afterAll(async () => {
    await stopSshd(sshd && dest(), sshd);
    device?.close();
    onRamp?.close();
    edge?.close();
    downgrader?.close();
    destTun?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('runs a command: output and user from the destination, the command in the edge log, the CA in sshd log', async () => {
    trace.clear();
    const run = await viaEdge('client', 'echo hello; id -un');
    expect(run.stderr).toBe('');
    expect(run.stdout).toBe('hello\nroot\n');
    expect(run.code).toBe(0);
    const text = logs.text();
    expect(text).toMatch(
      new RegExp(`SSH login flow=198\\.18\\.1\\.1:\\d+ to=198\\.18\\.3\\.3:22 user=root key=${fingerprintOf(file('client.pub')).replace(/[+/]/g, '\\$&')}`),
    );
    expect(text).toMatch(/SSH command flow=198\.18\.1\.1:\d+ to=198\.18\.3\.3:22 user=root command="echo hello; id -un" channel=0/);
    expect(text).toMatch(/SSH exit flow=\S+ to=198\.18\.3\.3:22 user=root channel=0 status=0/);
    // The destination saw the client's address (downgraded, not proxied) and the session certificate.
    expect(sshd!.output).toMatch(
      /Accepted publickey for root from 198\.18\.1\.1 port \d+ ssh2: ED25519-CERT SHA256:\S+ ID oxyctl ssh-sessions user=root flow=198\.18\.1\.1:\d+ \(serial \d+\) CA ED25519 SHA256:/,
    );
    await expect
      .poll(() => logs.text(), { timeout: 10_000 })
      .toMatch(
        /SSH session ended flow=\S+ to=198\.18\.3\.3:22 user=root client="?SSH-2\.0-OpenSSH_[^ ]+.* server="?SSH-2\.0-OpenSSH_\S+.* bytesIn=\d+ bytesOut=\d+ commands=1 lines=0 reason=\w+/,
      );
    const entry = await trace.waitFor(undefined, 10_000);
    expect(entry.hooks).toEqual(HOOK_ORDER['ip-flow'].filter((n) => entry.hooks.includes(n)));
    expect(entry.hooks).toEqual(expect.arrayContaining(['ipFlow.handleFlow', 'egress.handleConnection', 'tunnel.appTunnelPipeline']));
  }, 30_000);

  it('passes the exit status through', async () => {
    const run = await viaEdge('client', 'exit 3');
    expect(run.code).toBe(3);
    expect(logs.text()).toMatch(/SSH command \S+ \S+ user=root command="exit 3" channel=0/);
    expect(logs.text()).toMatch(/SSH exit \S+ \S+ user=root channel=0 status=3/);
  }, 30_000);

  it('logs the lines typed in an interactive shell (ssh -tt)', async () => {
    // The second line has a typo fixed with backspaces (DEL, as a terminal sends it).
    const run = await ssh(['-tt', '-i', file('client'), 'root@198.18.3.3'], 'echo typed-$((6*7))\necho tpyo\x7f\x7f\x7fypo-fixed\nexit\n');
    expect(run.stdout).toContain('typed-42');
    expect(run.stdout).toContain('typo-fixed\r\n');
    expect(run.code).toBe(0);
    const text = logs.text();
    expect(text).toMatch(/SSH shell \S+ \S+ user=root term=\S+ channel=0/);
    expect(text).toContain('user=root line="echo typed-$((6*7))" channel=0');
    expect(text).toContain('user=root line="echo typo-fixed" channel=0');
    expect(text).toMatch(/SSH typed line \S+ \S+ user=root line=exit channel=0/);
  }, 30_000);

  it('relays sftp (a subsystem) and refuses port forwarding, logging both', async () => {
    const sftp = await ssh(['-i', file('client'), '-b', '-', 'root@198.18.3.3'], 'pwd\n', 20_000, 'sftp');
    expect(sftp.stderr + sftp.stdout).toContain('Remote working directory: /root');
    expect(sftp.code).toBe(0);
    expect(logs.text()).toMatch(/SSH subsystem \S+ \S+ user=root subsystem=sftp channel=0/);
    const forward = await viaEdge('client', '-W', '198.18.3.3:80');
    expect(forward.code).toBe(255);
    expect(forward.stderr).toContain('open failed');
    expect(logs.text()).toMatch(/SSH port forwarding refused \S+ \S+ user=root kind=direct-tcpip target=198\.18\.3\.3:80/);
  }, 30_000);

  it('refuses a key that is not in authorized_keys, and logs it', async () => {
    const run = await viaEdge('stranger', 'true');
    expect(run.code).toBe(255);
    expect(run.stderr).toContain('Permission denied (publickey)');
    expect(logs.text()).toMatch(
      new RegExp(
        `SSH login refused \\S+ \\S+ user=root key=${fingerprintOf(file('stranger.pub')).replace(/[+/]/g, '\\$&')} reason="key not in authorized_keys"`,
      ),
    );
  }, 30_000);

  it('the destination itself refuses the client key: only the session CA gets in', async () => {
    const own = await direct('-i', file('client'));
    expect(own.code).toBe(255);
    expect(own.stderr).toContain('Permission denied (publickey)');
    const certified = await direct('-i', file('client'), '-o', `CertificateFile=${file('baseline.cert')}`);
    expect(certified.code).toBe(0);
  }, 30_000);
});

privilegedDescribe('examples/ssh-sessions.js with oxyctl edge run --hooks: downgraded into the vnet, to sshd behind a connector', () => {
  let site: VnetSite | undefined;
  let sshd: NsProcess | undefined;
  const dir = mkdtempSync(join(tmpdir(), 'oxy-ssh-hooks-'));

  beforeAll(async () => {
    keygen(join(dir, 'client'));
    site = await startVnetSite({ edgeArgs: ['--hooks', join(EXAMPLES, 'ssh-sessions.js')] });
    const keys = join(site.home, 'ssh-sessions');
    writeFileSync(join(keys, 'authorized_keys'), readFileSync(join(dir, 'client.pub'))); // read at each login
    sshd = await startSshd(site.dc, dir, ['198.18.0.10'], join(keys, 'ca.pub'));
    writeFileSync(join(dir, 'known_hosts'), `198.18.0.10 ${readFileSync(join(keys, 'host_key.pub'), 'utf8')}`);
  }, 120_000);
  afterAll(async () => {
    await stopSshd(site?.dc, sshd);
    await site?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('ssh from the device runs a command on the site host; the edge logs it', async () => {
    const run = await site!.inDevice('ssh', [...sshOptions(join(dir, 'known_hosts')), '-i', join(dir, 'client'), 'root@198.18.0.10', 'echo hello; id -un']);
    expect(run.stderr).toBe('');
    expect(run.stdout).toBe('hello\nroot\n');
    expect(run.code).toBe(0);
    expect(site!.edge.output).toMatch(/SSH sessions: destinations trust this CA/);
    await site!.edge.waitFor(/SSH command .*flow=\S+ to=198\.18\.0\.10:22 user=root command="echo hello; id -un" channel=0/);
    expect(sshd!.output).toMatch(/Accepted publickey for root from \S+ port \d+ ssh2: ED25519-CERT SHA256:\S+ ID oxyctl ssh-sessions user=root /);
  }, 30_000);
});

describe('examples/ssh-sessions.js as a --hooks module', () => {
  it('keeps its host key and session CA under OXY_HOME/ssh-sessions (0600), writes ca.pub and logs it', async () => {
    const { home, cleanup } = tempHome();
    try {
      const logs = logSink();
      await loadHooks(`${EXAMPLES}ssh-sessions.js`, { home, location: 'test', log: logs.log });
      const dir = join(home, 'ssh-sessions');
      const mode = (name: string) => statSync(join(dir, name)).mode & 0o777;
      expect([mode('host_key'), mode('ca_key'), mode('authorized_keys')]).toEqual([0o600, 0o600, 0o600]);
      const caPub = readFileSync(join(dir, 'ca.pub'), 'utf8');
      expect(caPub).toMatch(/^ssh-ed25519 AAAA\S+ oxyctl-ssh-sessions-ca\n$/);
      expect(execFileSync('ssh-keygen', ['-l', '-f', join(dir, 'ca.pub')], { encoding: 'utf8' })).toContain('(ED25519)');
      expect(logs.text()).toMatch(/SSH sessions: destinations trust this CA \(TrustedUserCAKeys\) .*ca="ssh-ed25519 /);
      expect(logs.text()).toContain(`ca="${caPub.trim()}"`);
      // A restart keeps the keys.
      const hostKey = readFileSync(join(dir, 'host_key'), 'utf8');
      await loadHooks(`${EXAMPLES}ssh-sessions.js`, { home, location: 'test', log: logSink().log });
      expect(readFileSync(join(dir, 'host_key'), 'utf8')).toBe(hostKey);
      expect(readFileSync(join(dir, 'ca.pub'), 'utf8')).toBe(caPub);
    } finally {
      cleanup();
    }
  });
});
