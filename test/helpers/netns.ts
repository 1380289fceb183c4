/**
 * Throw-away network namespaces for tests. Every namespace gets a unique name
 * (prefix-pid-random), starts with `lo` up, and is deleted by delete(), by the
 * afterAll that useNetns() registers, and — as a last resort if a test process
 * dies mid-way — by an exit hook. Needs privilegedDescribe(…, ['root', 'netns']).
 *
 *   const ns = useNetns('oxy-udp');                 // in a describe block
 *   ns().ip('addr', 'add', '198.18.0.1/24', 'dev', 'lo');
 *   ns().exec('ping', ['-c1', '198.18.0.1']);
 *
 * Test traffic rules: only addresses from 198.18.0.0/15 and 2001:db8::/32,
 * only between namespaces the test made itself (or loopback).
 */
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll } from 'vitest';
import { setns } from '../../src/engine/native/index.js';

const live = new Set<TestNetns>();
let exitHookInstalled = false;

function run(command: string, args: readonly string[], input?: string): string {
  try {
    return execFileSync(command, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'], timeout: 20_000 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${command} ${args.join(' ')} failed: ${e.stderr?.trim() || e.message}`);
  }
}

export class TestNetns {
  readonly name: string;
  /** For setns/openNetns: the bind mount `ip netns add` makes. */
  readonly path: string;
  private deleted = false;

  private constructor(name: string) {
    this.name = name;
    this.path = `/var/run/netns/${name}`;
  }

  /** Creates a namespace named `${prefix}-${pid}-${random}` with `lo` up. */
  static create(prefix = 'oxytest'): TestNetns {
    const ns = new TestNetns(`${prefix}-${process.pid}-${randomBytes(3).toString('hex')}`);
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.once('exit', () => {
        for (const left of live) left.delete();
      });
    }
    run('ip', ['netns', 'add', ns.name]);
    live.add(ns);
    try {
      ns.ip('link', 'set', 'lo', 'up');
    } catch (err) {
      ns.delete();
      throw err;
    }
    return ns;
  }

  /** `ip -n NAME ...args`; returns stdout, throws with stderr. */
  ip(...args: string[]): string {
    return run('ip', ['-n', this.name, ...args]);
  }

  /** Several `ip` commands in one process (`ip -n NAME -batch -`), one per line. */
  ipBatch(lines: readonly string[]): string {
    return run('ip', ['-n', this.name, '-batch', '-'], `${lines.join('\n')}\n`);
  }

  /** Runs a command inside the namespace and waits for it; returns stdout. */
  exec(command: string, args: readonly string[] = []): string {
    return run('ip', ['netns', 'exec', this.name, command, ...args]);
  }

  /** Starts a long-running command inside the namespace (kill it before delete()). */
  spawn(command: string, args: readonly string[] = [], options: SpawnOptions = {}): ChildProcess {
    return spawn('ip', ['netns', 'exec', this.name, command, ...args], options);
  }

  /**
   * A veth pair between this namespace and `peer`, created from inside the
   * namespaces (never in the root namespace), both ends up.
   */
  veth(name: string, peer: TestNetns, peerName: string): void {
    this.ip('link', 'add', name, 'type', 'veth', 'peer', 'name', peerName, 'netns', peer.name);
    this.ip('link', 'set', name, 'up');
    peer.ip('link', 'set', peerName, 'up');
  }

  /**
   * Loses `percent` % of the packets this namespace sends on `dev` (a veth end) to `peerDev`
   * in `peer`, at random, as a lossy link would: `tc qdisc … netem loss` on `dev` where the
   * kernel has netem, else nftables dropping that share on the peer's ingress (netdev hook).
   * Either way the loss happens after the sender's TCP handed the packet on, so TCP sees it and
   * retransmits (a drop in the sender's own output or egress hooks is reported back as a local
   * drop instead). Returns which was used.
   */
  lossyLink(dev: string, peer: TestNetns, peerDev: string, percent: number): 'netem' | 'nftables' {
    // One TCP segment per packet: with the veth's TSO a 2 MiB transfer is ~32 packets of 64 KiB,
    // and 10 % loss then misses every one of them about 1 time in 30.
    this.ip('link', 'set', 'dev', dev, 'gso_max_segs', '1');
    try {
      this.exec('tc', ['qdisc', 'add', 'dev', dev, 'root', 'netem', 'loss', `${percent}%`]);
      return 'netem';
    } catch {
      peer.exec('nft', ['add table netdev oxyloss']);
      peer.exec('nft', [`add chain netdev oxyloss in { type filter hook ingress device ${peerDev} priority 0 ; }`]);
      peer.exec('nft', [`add rule netdev oxyloss in numgen random mod 100 < ${percent} counter drop`]);
      return 'nftables';
    }
  }

  /** Deletes the namespace; safe to call twice. Interfaces inside go with it. */
  delete(): void {
    if (this.deleted) return;
    this.deleted = true;
    live.delete(this);
    try {
      run('ip', ['netns', 'delete', this.name]);
    } catch {
      // Already gone (deleted by hand or by a previous attempt).
    }
  }
}

/**
 * Registers beforeAll/afterAll for one namespace and returns its getter. Deletion
 * runs even when the tests or a later beforeAll fail.
 */
export function useNetns(prefix?: string, setup?: (ns: TestNetns) => void): () => TestNetns {
  let ns: TestNetns | undefined;
  beforeAll(() => {
    ns = TestNetns.create(prefix);
    setup?.(ns);
  });
  afterAll(() => {
    ns?.delete();
  });
  return () => {
    if (!ns) throw new Error('namespace not created yet (use it inside tests or hooks)');
    return ns;
  };
}

/**
 * Runs an async `fn` with the main thread inside the namespace `target` (an fd from
 * openNetns), switching back to `home` when it settles. Unlike withNetns this spans awaits:
 * everything the process does meanwhile happens in `target`, which is safe only because each
 * test file runs in its own process.
 */
export async function insideNetnsAsync<T>(target: number, home: number, fn: () => Promise<T>): Promise<T> {
  setns(target);
  try {
    return await fn();
  } finally {
    setns(home);
  }
}
