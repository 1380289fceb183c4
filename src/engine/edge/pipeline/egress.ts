/**
 * The egress pipeline every on-ramp shares, with its hook points in the documented order:
 * DNS (`dnsResolveOverride` or the system resolver, for hostnames only) →
 * `handleUpstreamIps` → `handleConnection` (default: through the tunnel whose route covers
 * the IP in the connection's vnet, else direct) → connect (`tcpConnectOverride` for direct;
 * `PrivateEgress.open` for tunnels; the TCP downgrader for IP off-ramps) →
 * `handleConnectionEstablished`.
 *
 * Failures are {@link EgressError}s carrying the HTTP status and the RFC 9209
 * `Proxy-Status` error type an HTTP on-ramp answers with.
 */
import { joinHostPort } from '../../../core/address.js';
import { createSocket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { OxyError, isOxyError, type ErrorCode } from '../../../core/errors.js';
import { type PrivateEgress } from '../private-egress.js';
import type { DowngradeSession, TcpDowngrader } from '../../netns/downgrader.js';
import { HookError, type HookConnection, type HookRunner } from '../../hooks/runner.js';
import { PacketView, TransportKind, buildUdp, formatAddress, parseAddress, parsePacket } from '../../packet/index.js';
import type {
  EgressDecision,
  EngineUdpAssociation,
  EstablishedInfo,
  HookContext,
  IpOffRamp,
  SocketAddress,
  UdpAssociation,
  VirtualNetwork,
} from '../../hooks/types.js';
import type { IpContext } from '../../flow/types.js';

/** RFC 9209 proxy error types used here. */
export type ProxyErrorType =
  | 'destination_ip_prohibited'
  | 'destination_ip_unroutable'
  | 'destination_unavailable'
  | 'destination_not_found'
  | 'dns_error'
  | 'connection_refused'
  | 'connection_timeout'
  | 'proxy_internal_error';

/** An egress that could not happen: the HTTP status and Proxy-Status error to answer with. */
export class EgressError extends OxyError {
  constructor(
    code: ErrorCode,
    message: string,
    readonly status: number,
    readonly proxyError: ProxyErrorType,
    cause?: unknown,
  ) {
    super(code, message, { cause });
    this.name = 'EgressError';
  }
}

/**
 * An on-ramp's own limit on where it connects (the CONNECT proxy's allow list): called with
 * each address the egress is about to connect to; an EgressError refuses it.
 */
export type EgressGuard = (target: SocketAddress, via: 'direct' | 'tunnel' | 'downgrade') => EgressError | undefined;

export interface EgressResult {
  socket: Duplex;
  info: EstablishedInfo;
}

export interface EgressOptions {
  runner: HookRunner;
  /** Tunnels; without it, `tunnel` decisions fail and the default is always direct. */
  tunnels?: PrivateEgress;
  /** The edge's one vnet resolver (StoreView.vnet), for a `tunnel` decision that names a vnet. */
  vnets?: (ref: string) => VirtualNetwork | undefined;
  /** For `downgrade` decisions (needs the netns privileges); made on first use. */
  downgrader?: () => Promise<TcpDowngrader>;
  /** Direct connect timeout (ms). Default 10 s. */
  connectTimeoutMs?: number;
}

export interface UdpResult {
  assoc: UdpAssociation & { onClose?(fn: () => void): void };
  info: EstablishedInfo;
}

interface OffRampState {
  /** The (tenant, vnet) of the first connection that used the off-ramp: its downgrade session's. */
  context?: IpContext;
  tcp?: DowngradeSession;
  /** UDP receivers by `client|port|upstream|port`. */
  udp: Map<string, (payload: Buffer) => void>;
}

export class Egress {
  readonly #offRamps = new WeakMap<IpOffRamp, OffRampState>();

  constructor(private readonly o: EgressOptions) {}

  /**
   * Connects `host:port` for `conn`, running the egress hooks. `source` is the client's
   * tuple for `downgrade` egress (IP flows). Rejects with EgressError, or HookError when a
   * hook failed.
   */
  async connectTcp(conn: HookConnection, host: string, port: number, source?: SocketAddress, guard?: EgressGuard): Promise<EgressResult> {
    const { ip, ips, decision } = await this.#decide(conn, host, port);
    const check = (address: string, p: number, via: 'direct' | 'tunnel' | 'downgrade') => {
      const refused = guard?.({ address, port: p }, via);
      if (refused) throw refused;
    };
    let result: EgressResult;
    switch (decision.action) {
      case 'direct': {
        const p = decision.port ?? port;
        let addresses = decision.address ? [decision.address] : ips;
        // Only the addresses the guard allows are tried; none: the first refusal is the answer.
        if (guard) {
          const allowed = addresses.filter((a) => !guard({ address: a, port: p }, 'direct'));
          if (!allowed.length) check(addresses[0], p, 'direct');
          addresses = allowed;
        }
        result = await this.#directFirst(conn, addresses, p);
        break;
      }
      case 'tunnel':
        check(decision.address ?? ip, decision.port ?? port, 'tunnel');
        result = await this.#tunnel(conn, decision.vnet ?? conn.vnet, decision.address ?? ip, decision.port ?? port);
        break;
      case 'downgrade':
        check(decision.address ?? ip, decision.port ?? port, 'downgrade');
        result = await this.#downgrade(conn, decision.offRamp, { address: decision.address ?? ip, port: decision.port ?? port }, source);
        break;
    }
    // Whoever uses the socket handles its errors while piping; one in between (the client's
    // hooks still running, or after the pipes settled) must not crash the edge.
    result.socket.on('error', () => undefined);
    this.#established(conn, result.info);
    return result;
  }

  /**
   * Makes the UDP association of an upgraded UDP flow from `source` to `ip:port`, running the
   * egress hooks as for TCP (`udpConnectOverride` for direct egress). Rejects like connectTcp.
   */
  async connectUdp(conn: HookConnection, ip: string, port: number, source: SocketAddress): Promise<UdpResult> {
    const { decision, ip: chosen } = await this.#decide(conn, ip, port);
    let result: UdpResult;
    switch (decision.action) {
      case 'direct':
        result = await this.#directUdp(conn, { address: decision.address ?? chosen, port: decision.port ?? port });
        break;
      case 'tunnel':
        result = await this.#tunnelUdp(conn, decision.vnet ?? conn.vnet, decision.address ?? chosen, decision.port ?? port);
        break;
      case 'downgrade':
        result = this.#downgradeUdp(conn, decision.offRamp, { address: decision.address ?? chosen, port: decision.port ?? port }, source);
        break;
    }
    this.#established(conn, result.info);
    return result;
  }

  /** DNS → handleUpstreamIps → handleConnection (or the default); a block throws. */
  async #decide(
    conn: HookConnection,
    host: string,
    port: number,
  ): Promise<{ ip: string; ips: string[]; decision: Exclude<EgressDecision, { action: 'block' }> }> {
    const r = this.o.runner;
    const ctx = conn as HookContext<unknown>;
    let ips: string[];
    if (net.isIP(host)) ips = [host];
    else if (r.dnsResolve) ips = await r.call(conn, 'egress.dnsResolveOverride', r.dnsResolve, host, ctx);
    else ips = await resolveHost(host);
    if (r.upstreamIps) ips = (await r.call(conn, 'egress.handleUpstreamIps', r.upstreamIps, ips, { host, port }, ctx)) ?? ips;
    if (!ips?.length) throw new EgressError('OXY_ERR_EGRESS_DNS', `No address to connect to for ${host}`, 502, 'dns_error');
    const ip = ips[0];
    let decision = r.egressConnection ? await r.call(conn, 'egress.handleConnection', r.egressConnection, { host, port, ip, ips }, ctx) : undefined;
    decision ??= this.defaultDecision(conn, ip);
    if (typeof decision !== 'object') throw new HookError('egress.handleConnection', new Error(`returned ${String(decision)}, not a decision`));
    switch (decision.action) {
      case 'block':
        throw new EgressError(
          'OXY_ERR_EGRESS_BLOCKED',
          decision.reason ?? `Egress to ${host}:${port} is not allowed`,
          decision.status ?? 403,
          'destination_ip_prohibited',
        );
      case 'direct':
      case 'tunnel':
      case 'downgrade':
        return { ip, ips, decision };
      default:
        throw new HookError('egress.handleConnection', new Error(`unknown action ${(decision as { action: string }).action}`));
    }
  }

  #established(conn: HookConnection, info: EstablishedInfo): void {
    const r = this.o.runner;
    if (r.established) r.event(conn, 'egress.handleConnectionEstablished', r.established, info, conn as HookContext<unknown>);
  }

  /** The default: through a tunnel when a route in the connection's vnet covers `ip`, else direct. */
  defaultDecision(conn: HookConnection, ip: string): EgressDecision {
    const vnet = conn.vnet;
    if (vnet && this.o.tunnels?.route(vnet.id, ip)) return { action: 'tunnel', vnet: vnet.id };
    return { action: 'direct' };
  }

  /** Tries the addresses in order; the last failure is the answer. */
  async #directFirst(conn: HookConnection, addresses: string[], port: number): Promise<EgressResult> {
    for (let i = 0; ; i++) {
      try {
        return await this.#direct(conn, { address: addresses[i], port });
      } catch (err) {
        if (!(err instanceof EgressError) || i === addresses.length - 1) throw err;
      }
    }
  }

  async #direct(conn: HookConnection, upstream: SocketAddress): Promise<EgressResult> {
    const r = this.o.runner;
    const info: EstablishedInfo = { upstream, via: 'direct' };
    if (r.tcpConnect) {
      const socket = await r.call(conn, 'egress.tcpConnectOverride', r.tcpConnect, upstream, conn as HookContext<unknown>);
      if (socket) return { socket, info };
    }
    const socket = net.connect({ host: upstream.address, port: upstream.port, allowHalfOpen: true });
    socket.setNoDelay(true);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new EgressError('OXY_ERR_EGRESS_CONNECT', `Connecting to ${hostPort(upstream)} timed out`, 504, 'connection_timeout'));
      }, this.o.connectTimeoutMs ?? 10_000);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.off('error', onError);
        resolve();
      });
      const onError = (err: Error) => {
        clearTimeout(timer);
        reject(new EgressError('OXY_ERR_EGRESS_CONNECT', `Connecting to ${hostPort(upstream)} failed: ${err.message}`, 502, 'connection_refused', err));
      };
      socket.once('error', onError);
    });
    return { socket, info };
  }

  async #tunnel(_conn: HookConnection, vnetRef: string | VirtualNetwork | undefined, address: string, port: number): Promise<EgressResult> {
    const { stream, route, vnetId } = await this.#throughTunnel(vnetRef, address, (tunnels, vnetId) => tunnels.open('tcp', vnetId, address, port));
    return { socket: stream, info: { upstream: { address, port }, via: 'tunnel', route: { network: route.network, tunnelName: route.tunnelName, vnetId } } };
  }

  async #tunnelUdp(conn: HookConnection, vnetRef: string | VirtualNetwork | undefined, address: string, port: number): Promise<UdpResult> {
    const metadata: [string, string][] = conn.tenant ? [['Tenant', conn.tenant]] : [];
    const { assoc, route, vnetId } = await this.#throughTunnel(vnetRef, address, (tunnels, vnetId) => tunnels.openUdp(vnetId, address, port, metadata));
    return { assoc, info: { upstream: { address, port }, via: 'tunnel', route: { network: route.network, tunnelName: route.tunnelName, vnetId } } };
  }

  /** Opens through the tunnel serving `address` in the vnet, with the failures as EgressErrors. */
  async #throughTunnel<T>(
    vnetRef: string | VirtualNetwork | undefined,
    address: string,
    open: (tunnels: PrivateEgress, vnetId: string) => Promise<T>,
  ): Promise<T & { vnetId: string }> {
    const tunnels = this.o.tunnels;
    // The connection's vnet was resolved by its on-ramp; a hook's decision may name another.
    const vnetId = (typeof vnetRef === 'string' ? this.o.vnets?.(vnetRef) : vnetRef)?.id;
    if (!tunnels || !vnetId) {
      const named = typeof vnetRef === 'string' ? vnetRef : '(default)';
      throw new EgressError('OXY_ERR_NO_ROUTE', `No virtual network ${named} to route ${address} in`, 502, 'destination_ip_unroutable');
    }
    try {
      return { ...(await open(tunnels, vnetId)), vnetId };
    } catch (err) {
      if (isOxyError(err, 'OXY_ERR_NO_ROUTE')) throw new EgressError('OXY_ERR_NO_ROUTE', err.message, 502, 'destination_ip_unroutable', err);
      if (isOxyError(err, 'OXY_ERR_NO_CONNECTOR')) throw new EgressError('OXY_ERR_NO_CONNECTOR', err.message, 502, 'destination_unavailable', err);
      if (isOxyError(err, 'OXY_ERR_DIAL_FAILED')) throw new EgressError('OXY_ERR_DIAL_FAILED', err.message, 502, 'connection_refused', err);
      throw err;
    }
  }

  /** Direct UDP: the app's association (`udpConnectOverride`), else a connected socket from the edge host. */
  async #directUdp(conn: HookConnection, upstream: SocketAddress): Promise<UdpResult> {
    const r = this.o.runner;
    const info: EstablishedInfo = { upstream, via: 'direct' };
    if (r.udpConnect) {
      const assoc = await r.call(conn, 'egress.udpConnectOverride', r.udpConnect, upstream, conn as HookContext<unknown>);
      if (assoc) return { assoc, info };
    }
    const socket = createSocket(net.isIPv6(upstream.address) ? 'udp6' : 'udp4');
    socket.on('error', () => socket.close());
    await new Promise<void>((resolve, reject) => {
      socket.once('error', (err) =>
        reject(new EgressError('OXY_ERR_EGRESS_CONNECT', `UDP to ${hostPort(upstream)} failed: ${err.message}`, 502, 'connection_refused', err)),
      );
      socket.connect(upstream.port, upstream.address, () => resolve());
    });
    const closed: (() => void)[] = [];
    socket.once('close', () => closed.splice(0).forEach((fn) => fn()));
    const assoc: EngineUdpAssociation = {
      send: (payload) => socket.send(payload),
      onMessage: (receive) => void socket.on('message', (m) => receive(m)),
      close: () => {
        try {
          socket.close();
        } catch {
          // already closed
        }
      },
      onClose: (fn) => void closed.push(fn),
    };
    return { assoc, info };
  }

  /** UDP downgrade: the IP and UDP headers go on each payload (and come off each reply). */
  #downgradeUdp(conn: HookConnection, offRamp: IpOffRamp, upstream: SocketAddress, source: SocketAddress): UdpResult {
    const state = this.#offRamp(conn, offRamp);
    const src = parseAddress(source.address);
    const dst = parseAddress(upstream.address);
    const key = `${source.address}|${source.port}|${upstream.address}|${upstream.port}`;
    const assoc: UdpAssociation = {
      send: (payload) => offRamp.send(buildUdp({ src, dst, srcPort: source.port, dstPort: upstream.port, payload })),
      onMessage: (receive) => void state.udp.set(key, receive),
      close: () => void state.udp.delete(key),
    };
    return { assoc, info: { upstream, via: 'downgrade' } };
  }

  /** What this egress keeps per IP off-ramp: its TCP downgrade session and UDP receivers; replies are sorted between them. */
  #offRamp(conn: HookConnection, offRamp: IpOffRamp): OffRampState {
    let state = this.#offRamps.get(offRamp);
    if (!state) {
      const s: OffRampState = { udp: new Map() };
      const view = new PacketView();
      offRamp.onPacket((packet) => {
        if (s.udp.size) {
          const v = parsePacket(packet, view);
          if (v.ok && v.transport === TransportKind.Udp) {
            const receive = s.udp.get(`${formatAddress(v.dst)}|${v.dstPort}|${formatAddress(v.src)}|${v.srcPort}`);
            if (receive) return receive(Buffer.from(v.payload));
          }
        }
        s.tcp?.receive(packet);
      });
      this.#offRamps.set(offRamp, (state = s));
    }
    state.context ??= { tenant: conn.tenant ?? 'default', vnet: conn.vnet?.id ?? '', vnetName: conn.vnet?.name };
    return state;
  }

  async #downgrade(conn: HookConnection, offRamp: IpOffRamp, upstream: SocketAddress, source?: SocketAddress): Promise<EgressResult> {
    if (!this.o.downgrader) throw new EgressError('OXY_ERR_EGRESS_CONNECT', 'This edge has no downgrader for IP off-ramps', 502, 'proxy_internal_error');
    const state = this.#offRamp(conn, offRamp);
    if (!state.tcp) {
      const downgrader = await this.o.downgrader();
      state.tcp ??= downgrader.session(state.context!, (packet) => offRamp.send(packet));
    }
    const src = source ?? conn.client;
    const socket = await state.tcp.connect({ src: src.address, srcPort: source?.port, dst: upstream.address, dstPort: upstream.port });
    return { socket, info: { upstream, via: 'downgrade' } };
  }
}

async function resolveHost(host: string): Promise<string[]> {
  try {
    return (await lookup(host, { all: true })).map((a) => a.address);
  } catch (err) {
    throw new EgressError('OXY_ERR_EGRESS_DNS', `Cannot resolve ${host}: ${(err as Error).message}`, 502, 'dns_error', err);
  }
}

export const hostPort = (a: SocketAddress): string => joinHostPort(a.address, a.port);
