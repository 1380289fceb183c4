/**
 * The engine side of the hooks: the implemented hook functions resolved once (a missing
 * hook is `undefined`, so call sites test a field and pay nothing more), the
 * per-connection context (created once, passed to every hook), error tagging (a hook's
 * error fails only its connection, with a log line naming the hook) and the trace
 * recorder (which hooks fired, in order, per connection).
 *
 * Call sites follow one pattern:
 *
 *   const fn = runner.egressConnection;              // undefined when not implemented
 *   const decision = fn ? await runner.call(ctx, 'egress.handleConnection', fn, target, ctx) : defaultDecision();
 *
 * The engine is not generic over the application's context type: it holds `unknown`.
 */
import { OxyError } from '../../core/errors.js';
import type { Logger } from '../observe/log.js';
import type { TracedOnramp } from './order.js';
import type {
  AppLifecycleHook,
  EgressHook,
  HookContext,
  Hooks,
  HttpRequestHook,
  IngressHook,
  IpFlowHook,
  Onramp,
  ProxyHeader,
  ProxyProtocolHook,
  SocketAddress,
  TunnelHook,
  VirtualNetwork,
  ConnectionStats,
} from './types.js';

/** An error thrown (or a promise rejected) inside an application hook. */
export class HookError extends OxyError {
  constructor(
    readonly hook: string,
    cause: unknown,
  ) {
    super('OXY_ERR_HOOK', `Hook ${hook} failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'HookError';
  }
}

let nextConnectionId = 1;

/** One connection's context as the engine holds it; hooks see it as HookContext<C>. */
export class HookConnection implements HookContext<unknown> {
  readonly id = nextConnectionId++;
  readonly startedAt = Date.now();
  vnet: VirtualNetwork | undefined;
  tenant?: string;
  proxyHeader?: ProxyHeader;
  ext: unknown;
  /** Hooks fired so far, when tracing. */
  trace: string[] | undefined;
  /** The on-ramp's kind for the trace: `http-proxy` once a connection carried an absolute-form request. */
  traced: TracedOnramp;
  #log: Logger | undefined;
  #closed = false;

  constructor(
    readonly onramp: Onramp,
    public client: SocketAddress,
    readonly local: SocketAddress,
    private readonly baseLog: Logger,
  ) {
    this.traced = onramp;
  }

  get log(): Logger {
    return (this.#log ??= this.baseLog.child({ connection: this.id }));
  }

  /** @internal true the first time only. */
  markClosed(): boolean {
    if (this.#closed) return false;
    this.#closed = true;
    return true;
  }
}

export interface TraceEntry {
  id: number;
  onramp: TracedOnramp;
  hooks: string[];
}

/**
 * Records the order hooks fire in, per connection. Finished connections are kept (the
 * last `keep`), logged with `--trace-hooks` as
 * `Hook trace connection=7 onramp=connect-proxy hooks=newCtx>ingress.handleConnection>…`.
 */
export class HookTrace {
  readonly finished: TraceEntry[] = [];
  #waiters: { match: (e: TraceEntry) => boolean; resolve: (e: TraceEntry) => void }[] = [];

  constructor(private readonly o: { log?: Logger; keep?: number } = {}) {}

  /** @internal */
  finish(conn: HookConnection): void {
    if (!conn.trace) return;
    const entry: TraceEntry = { id: conn.id, onramp: conn.traced, hooks: conn.trace };
    this.o.log?.info({ connection: entry.id, onramp: entry.onramp, hooks: entry.hooks.join('>') }, 'Hook trace');
    this.finished.push(entry);
    if (this.finished.length > (this.o.keep ?? 1000)) this.finished.shift();
    this.#waiters = this.#waiters.filter((w) => {
      if (!w.match(entry)) return true;
      w.resolve(entry);
      return false;
    });
  }

  /** Resolves with the first finished connection (already finished, or to come) that `match` accepts. */
  waitFor(match: (e: TraceEntry) => boolean = () => true, timeoutMs = 10_000): Promise<TraceEntry> {
    const done = this.finished.find(match);
    if (done) return Promise.resolve(done);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no hook trace matched within ${timeoutMs} ms`)), timeoutMs);
      this.#waiters.push({ match, resolve: (e) => (clearTimeout(timer), resolve(e)) });
    });
  }

  clear(): void {
    this.finished.length = 0;
  }
}

type Fn<A extends unknown[], R> = (...args: A) => R;

function bound<F>(family: object | undefined, name: string): F | undefined {
  const fn = (family as Record<string, unknown> | undefined)?.[name];
  return typeof fn === 'function' ? (fn.bind(family) as F) : undefined;
}

const isThenable = (v: unknown): v is PromiseLike<unknown> => typeof (v as { then?: unknown } | null)?.then === 'function';

export interface HookRunnerOptions {
  log: Logger;
  /** Record hook order per connection (`--trace-hooks`, tests). */
  trace?: boolean | HookTrace;
}

export class HookRunner {
  readonly hooks: Hooks<unknown>;
  readonly trace: HookTrace | undefined;
  readonly log: Logger;

  readonly newCtx: (() => unknown) | undefined;
  readonly ingressConnection: IngressHook['handleConnection'];
  readonly ingressClose: IngressHook['handleConnectionClose'];
  readonly handleFlow: IpFlowHook['handleFlow'];
  readonly handlePacket: IpFlowHook['handlePacket'];
  readonly proxyHeader: ProxyProtocolHook['handleConnection'];
  readonly shouldInterceptHttps: TunnelHook['shouldInterceptHttps'];
  readonly appTunnelPipeline: TunnelHook['appTunnelPipeline'];
  readonly connectRequest: HttpRequestHook['handleProxyConnectRequest'];
  readonly connectResponse: HttpRequestHook['handleProxyConnectResponse'];
  readonly httpRequest: HttpRequestHook['handleRequest'];
  readonly httpResponse: HttpRequestHook['handleResponse'];
  readonly dnsResolve: EgressHook['dnsResolveOverride'];
  readonly upstreamIps: EgressHook['handleUpstreamIps'];
  readonly egressConnection: EgressHook['handleConnection'];
  readonly tcpConnect: EgressHook['tcpConnectOverride'];
  readonly udpConnect: EgressHook['udpConnectOverride'];
  readonly established: EgressHook['handleConnectionEstablished'];
  readonly stateForRestart: AppLifecycleHook['stateForRestart'];

  constructor(hooks: Hooks<unknown> = {}, options: HookRunnerOptions) {
    this.hooks = hooks;
    this.log = options.log;
    this.trace = options.trace instanceof HookTrace ? options.trace : options.trace ? new HookTrace({ log: options.log }) : undefined;
    this.newCtx = typeof hooks.newCtx === 'function' ? hooks.newCtx.bind(hooks) : undefined;
    this.ingressConnection = bound(hooks.ingress, 'handleConnection');
    this.ingressClose = bound(hooks.ingress, 'handleConnectionClose');
    this.handleFlow = bound(hooks.ipFlow, 'handleFlow');
    this.handlePacket = bound(hooks.ipFlow, 'handlePacket');
    this.proxyHeader = bound(hooks.proxyProtocol, 'handleConnection');
    this.shouldInterceptHttps = bound(hooks.tunnel, 'shouldInterceptHttps');
    this.appTunnelPipeline = bound(hooks.tunnel, 'appTunnelPipeline');
    this.connectRequest = bound(hooks.http, 'handleProxyConnectRequest');
    this.connectResponse = bound(hooks.http, 'handleProxyConnectResponse');
    this.httpRequest = bound(hooks.http, 'handleRequest');
    this.httpResponse = bound(hooks.http, 'handleResponse');
    this.dnsResolve = bound(hooks.egress, 'dnsResolveOverride');
    this.upstreamIps = bound(hooks.egress, 'handleUpstreamIps');
    this.egressConnection = bound(hooks.egress, 'handleConnection');
    this.tcpConnect = bound(hooks.egress, 'tcpConnectOverride');
    this.udpConnect = bound(hooks.egress, 'udpConnectOverride');
    this.established = bound(hooks.egress, 'handleConnectionEstablished');
    this.stateForRestart = bound(hooks.lifecycle, 'stateForRestart');
  }

  /** A runner with no hooks: the engine's defaults everywhere. */
  static none(log: Logger, trace?: boolean | HookTrace): HookRunner {
    return new HookRunner({}, { log, trace });
  }

  /** The context of a new connection; runs `newCtx` (the first hook of every connection). */
  connection(onramp: Onramp, client: SocketAddress, local: SocketAddress): HookConnection {
    const conn = new HookConnection(onramp, client, local, this.log);
    if (this.trace) conn.trace = [];
    const make = this.newCtx;
    conn.ext = make ? this.call(conn, 'newCtx', make) : {};
    return conn;
  }

  /**
   * Runs one hook for `conn`: records it in the trace, and turns a throw or a rejection
   * into a {@link HookError} naming the hook. A synchronous hook stays synchronous.
   */
  call<A extends unknown[], R>(conn: HookConnection, name: string, fn: Fn<A, R>, ...args: A): R {
    if (conn.trace) conn.trace.push(name);
    let result: R;
    try {
      result = fn(...args);
    } catch (err) {
      throw new HookError(name, err);
    }
    if (isThenable(result)) {
      return (result as PromiseLike<unknown>).then(undefined, (err: unknown) => {
        throw new HookError(name, err);
      }) as R;
    }
    return result;
  }

  /** Like call() for a per-packet hook: traced at its first firing only. */
  callPerPacket<A extends unknown[], R>(conn: HookConnection, name: string, fn: Fn<A, R>, ...args: A): R {
    if (conn.trace && !conn.trace.includes(name)) conn.trace.push(name);
    try {
      return fn(...args);
    } catch (err) {
      throw new HookError(name, err);
    }
  }

  /** Runs an event hook (no answer expected): an error is logged, never thrown. */
  event<A extends unknown[]>(conn: HookConnection, name: string, fn: Fn<A, unknown>, ...args: A): void {
    try {
      const r = this.call(conn, name, fn, ...args);
      if (isThenable(r)) (r as Promise<unknown>).catch((err: unknown) => this.failed(conn, err));
    } catch (err) {
      this.failed(conn, err);
    }
  }

  /**
   * Logs the failure of a connection, or with `scope: 'request'` of one request on it (the
   * connection lives on); names the hook when a hook failed.
   */
  failed(conn: HookConnection, err: unknown, message = 'Connection failed', scope: 'connection' | 'request' = 'connection'): void {
    if (err instanceof HookError) {
      conn.log.error(
        { hook: err.hook, err: err.cause ?? err },
        scope === 'request' ? 'Hook failed; failing its request' : 'Hook failed; closing its connection',
      );
    } else {
      conn.log.warn({ err }, message);
    }
  }

  /** Ends a connection: `ingress.handleConnectionClose` (if implemented), then its trace. Idempotent. */
  close(conn: HookConnection, stats: ConnectionStats): void {
    if (!conn.markClosed()) return;
    const fn = this.ingressClose;
    if (fn) this.event(conn, 'ingress.handleConnectionClose', fn, stats, conn as HookContext<unknown>);
    this.trace?.finish(conn);
  }

  /** `lifecycle.stateForRestart`, errors logged (undefined then). */
  async saveState(): Promise<unknown> {
    const fn = this.stateForRestart;
    if (!fn) return undefined;
    try {
      return await fn();
    } catch (err) {
      this.log.error({ hook: 'lifecycle.stateForRestart', err }, 'Hook failed; no state for the next process');
      return undefined;
    }
  }
}
