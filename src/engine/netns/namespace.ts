/**
 * An unnamed network namespace for the edge's TUN upgrade/downgrade.
 *
 * How it is made (primary path, as root): the edge spawns the namespace child under
 * `unshare --net` (a new, unnamed network namespace: nothing under /var/run/netns),
 * waits for it to say ready, and opens /proc/CHILD/ns/net. With that fd, the main
 * thread enters the namespace synchronously (`withNetns`) to open TUNs and bind
 * listeners there; the child runs `ip` for addresses and routes and makes the client
 * sockets a downgrade needs (Node cannot connect synchronously, so a connect from the
 * main thread would run in the wrong namespace), passing them back over IPC.
 *
 * The namespace lives as long as anything holds it: the fd, the TUNs, the sockets and
 * the child. close() releases all of them; if the edge dies, the kernel does it (the
 * child exits when its IPC channel closes). No names leak.
 *
 * Unprivileged path (not root, or `unprivileged: true`): the child starts under
 * `unshare --user --map-root-user --net`. The parent cannot setns into a namespace owned by
 * another user namespace, so the child opens the TUN itself and passes its fd back over a
 * SEQPACKET pair (SCM_RIGHTS; the parent adopts it with Tun.fromFd), and binds listeners
 * that come back over IPC, as connected sockets already do. openTun() and listen() hide
 * which path is in use.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readlinkSync } from 'node:fs';
import type net from 'node:net';

import { OxyError } from '../../core/errors.js';
import { addonPath, closeFd, openNetns, SeqpacketSocket, Tun, withNetns } from '../native/index.js';
import type { TunOffload } from '../native/tun.js';
import { native } from '../native/binding.js';
import { NAMESPACE_CHILD_SOURCE } from './child-source.js';

interface Reply {
  id?: number;
  op?: string;
  ok?: boolean;
  error?: string;
}

export interface UnnamedNetnsOptions {
  /** How long to wait for the child to start. Default 10 s. */
  startTimeoutMs?: number;
  /**
   * Run the child in an existing namespace (a path such as /var/run/netns/NAME or
   * /proc/PID/ns/net, entered with `nsenter --net=PATH`) instead of a new one: for tests
   * and benches that need sockets made inside a namespace they created.
   */
  join?: string;
  /**
   * Make the namespace inside a new user namespace and let the child open TUNs and bind
   * listeners (the path without root). Default: when not running as root.
   */
  unprivileged?: boolean;
}

export interface NetnsTunOptions {
  name: string;
  mtu?: number;
  txQueueLength?: number;
  batchSize?: number;
  maxPacketSize?: number;
  /** See TunOptions.partialChecksums (and its `offload`). */
  partialChecksums?: boolean;
  offload?: TunOffload;
}

export class UnnamedNetns {
  private fd: number;
  private child: ChildProcess | undefined;
  /** Unprivileged mode: where the child's TUN fds arrive (SCM_RIGHTS). */
  private fdChannel: SeqpacketSocket | undefined;
  private readonly pendingFds = new Map<number, (fd: number) => void>();
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (value: { reply: Reply; handle: unknown }) => void; reject: (err: Error) => void }>();
  private closed = false;

  private constructor(fd: number, child: ChildProcess, fdChannel?: SeqpacketSocket) {
    this.fd = fd;
    this.child = child;
    this.fdChannel = fdChannel;
    fdChannel?.on('message', (data: Buffer, fds: readonly number[]) => {
      const id = (JSON.parse(data.toString()) as { id: number }).id;
      const take = this.pendingFds.get(id);
      this.pendingFds.delete(id);
      if (take && fds[0] !== undefined) take(fds[0]);
      else for (const fd of fds) closeFd(fd);
    });
    fdChannel?.on('error', () => {});
    child.on('message', (message: Reply, handle: unknown) => {
      if (typeof message?.id !== 'number') return;
      const waiter = this.pending.get(message.id);
      if (!waiter) {
        (handle as net.Socket | undefined)?.destroy?.();
        return;
      }
      this.pending.delete(message.id);
      waiter.resolve({ reply: message, handle });
    });
    child.on('exit', () => this.failPending(new OxyError('OXY_ERR_NETNS_CHILD', 'namespace child exited')));
  }

  /** Creates the namespace (root: `unshare --net`) with `lo` up; or joins one (`join`). */
  static async create(options: UnnamedNetnsOptions = {}): Promise<UnnamedNetns> {
    const unprivileged = !options.join && (options.unprivileged ?? process.getuid?.() !== 0);
    const launcher = options.join
      ? ['nsenter', `--net=${options.join}`, '--']
      : unprivileged
        ? ['unshare', '--user', '--map-root-user', '--net', '--']
        : ['unshare', '--net', '--'];
    // Unprivileged: a SEQPACKET pair whose far end is the child's fd 4, for TUN fds.
    const pair = unprivileged ? native().seqpacketPair() : undefined;
    const child = spawn(launcher[0]!, [...launcher.slice(1), process.execPath, '-e', NAMESPACE_CHILD_SOURCE], {
      stdio: ['ignore', 'ignore', 'pipe', 'ipc', ...(pair ? [pair[1]] : [])],
      env: { ...process.env, OXY_NATIVE_ADDON: addonPath() },
    });
    if (pair) closeFd(pair[1]);
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      if (stderr.length < 4096) stderr += chunk.toString();
    });
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('timed out')), options.startTimeoutMs ?? 10_000);
        child.once('error', reject);
        child.once('exit', (code) => reject(new Error(`exited with ${code}: ${stderr.trim()}`)));
        child.on('message', (m: Reply) => {
          if (m?.op === 'ready') {
            clearTimeout(timer);
            resolve();
          }
        });
      });
    } catch (cause) {
      child.kill('SIGKILL');
      if (pair) closeFd(pair[0]);
      throw new OxyError('OXY_ERR_NETNS_CREATE', `could not start the namespace child (${launcher.join(' ')}): ${(cause as Error).message}`, { cause });
    }
    child.removeAllListeners('exit');
    child.removeAllListeners('error');
    child.on('error', () => {});
    child.unref();
    (child.stderr as { unref?: () => void } | null)?.unref?.();
    (child.channel as { unref?: () => void } | undefined)?.unref?.();
    const path = `/proc/${child.pid}/ns/net`;
    let fd = -1;
    try {
      if (readlinkSync(path) === readlinkSync('/proc/self/ns/net')) throw new Error('child is still in our namespace');
      if (!unprivileged) fd = openNetns(path);
    } catch (cause) {
      child.kill('SIGKILL');
      if (pair) closeFd(pair[0]);
      throw new OxyError('OXY_ERR_NETNS_CREATE', `could not open the namespace of the child: ${(cause as Error).message}`, { cause });
    }
    const channel = pair ? SeqpacketSocket.fromFd(pair[0], { maxMessageSize: 256 }) : undefined;
    channel?.unref();
    const ns = new UnnamedNetns(fd, child, channel);
    await ns.ip(['link set lo up']);
    return ns;
  }

  /** Whether the namespace lives in a user namespace of its own (no setns from here). */
  get unprivileged(): boolean {
    return this.fdChannel !== undefined;
  }

  /** The namespace fd (valid until close(); privileged mode only). */
  get netnsFd(): number {
    if (this.fd < 0) throw new OxyError('OXY_ERR_NETNS_CHILD', 'an unprivileged namespace has no fd in this process');
    return this.fd;
  }

  /** A path to the namespace for tools (e.g. `nsenter --net=PATH`). */
  get path(): string {
    return this.fd >= 0 ? `/proc/${process.pid}/fd/${this.fd}` : `/proc/${this.child?.pid}/ns/net`;
  }

  /** Runs `fn` synchronously inside the namespace (privileged mode only). */
  run<T>(fn: () => T): T {
    if (this.closed) throw new OxyError('OXY_ERR_NETNS_CHILD', 'namespace is closed');
    return withNetns(this.netnsFd, fn);
  }

  /** A TUN device inside the namespace, set to `mtu` and `txQueueLength`. */
  async openTun(o: NetnsTunOptions): Promise<Tun> {
    const io = { batchSize: o.batchSize ?? 128, maxPacketSize: o.maxPacketSize, partialChecksums: o.partialChecksums, offload: o.offload };
    if (!this.unprivileged) return this.run(() => Tun.open({ name: o.name, mtu: o.mtu, txQueueLength: o.txQueueLength, ...io }));
    const id = this.nextId++;
    const fd = new Promise<number>((resolve) => this.pendingFds.set(id, resolve));
    const answer = this.request(
      {
        op: 'tun',
        name: o.name,
        mtu: o.mtu,
        txQueueLength: o.txQueueLength,
        batchSize: io.batchSize,
        maxPacketSize: o.maxPacketSize ?? 65535,
        partialChecksums: o.partialChecksums === true,
      },
      id,
    );
    // The fd arrives on the SEQPACKET pair; only a failure is answered over IPC.
    const failed = answer.then(({ reply }) => {
      throw new OxyError('OXY_ERR_NETNS_CHILD', `opening a TUN in the namespace failed: ${reply.error}`);
    });
    // Link ioctls already ran in the child: adopting the fd must not redo them here.
    return Tun.fromFd(await Promise.race([fd, failed]), io);
  }

  /** A TCP listener on [::]:0 inside the namespace (dual stack). */
  async listen(backlog = 4096): Promise<net.Server> {
    if (!this.unprivileged) {
      const { createServer } = await import('node:net');
      // Half-open: a client's FIN must not close the way back (its answer may still come over the tunnel).
      const server = createServer({ noDelay: true, allowHalfOpen: true });
      // No host: bound synchronously to [::], so inside the namespace.
      this.run(() => server.listen({ port: 0, backlog }));
      return server;
    }
    const { reply, handle } = await this.request({ op: 'listen', backlog });
    if (!reply.ok || !handle) throw new OxyError('OXY_ERR_NETNS_CHILD', `listening in the namespace failed: ${reply.error ?? 'no server'}`);
    // Node's IPC rebuilds the server with default options; accepted sockets take this flag from it.
    (handle as net.Server & { allowHalfOpen: boolean }).allowHalfOpen = true;
    return handle as net.Server;
  }

  /** Runs `ip -batch` lines inside the namespace. */
  async ip(lines: readonly string[]): Promise<void> {
    const { reply } = await this.request({ op: 'ip', lines });
    if (!reply.ok) throw new OxyError('OXY_ERR_NETNS_CHILD', `ip in namespace failed: ${reply.error}`);
  }

  /** Sets a net.* sysctl inside the namespace (e.g. net.ipv4.ip_nonlocal_bind). */
  async sysctl(name: string, value: string | number): Promise<void> {
    const { reply } = await this.request({ op: 'sysctl', name, value });
    if (!reply.ok) throw new OxyError('OXY_ERR_NETNS_CHILD', `sysctl ${name} in namespace failed: ${reply.error}`);
  }

  /** A TCP client socket made inside the namespace, connected (the kernel sent the SYN from there). */
  async connect(options: { host: string; port: number; localAddress?: string; localPort?: number; timeoutMs?: number }): Promise<net.Socket> {
    const { reply, handle } = await this.request({ op: 'connect', ...options });
    if (!reply.ok || !handle) throw new OxyError('OXY_ERR_NETNS_CHILD', `connect from namespace failed: ${reply.error ?? 'no socket'}`);
    return handle as net.Socket;
  }

  private request(message: Record<string, unknown>, id = this.nextId++): Promise<{ reply: Reply; handle: unknown }> {
    const child = this.child;
    if (this.closed || !child?.connected) return Promise.reject(new OxyError('OXY_ERR_NETNS_CHILD', 'namespace child is gone'));
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      child.send({ ...message, id }, (err) => {
        if (err && this.pending.delete(id)) reject(err);
      });
    });
  }

  private failPending(err: Error): void {
    for (const waiter of this.pending.values()) waiter.reject(err);
    this.pending.clear();
  }

  /** Releases the namespace fd and stops the child; the namespace goes once its TUNs and sockets are closed. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.failPending(new OxyError('OXY_ERR_NETNS_CHILD', 'namespace closed'));
    const child = this.child;
    this.child = undefined;
    if (child) {
      if (child.connected) child.disconnect();
      child.kill('SIGKILL');
    }
    this.fdChannel?.close();
    if (this.fd >= 0) closeFd(this.fd);
    this.fd = -1;
  }
}
