/**
 * The hook API: what an application module may implement to steer the edge.
 *
 * A hooks module is an ES module exporting `start(settings, parentState)`, which returns
 * a {@link Hooks} object. Every family and every hook in it is optional; a hook left out
 * has the documented default, and with no hooks at all the edge proxies as configured.
 *
 * `C` is the application's per-connection context type (an opaque extension): the engine
 * creates one value per connection with `newCtx()` (default: `{}`) and hands the same
 * object, as `ctx.ext`, to every hook of that connection. The engine never looks inside.
 *
 * The TSDoc of each hook below is the reference: `scripts/gen-hooks-doc.js` turns the
 * `@fires`, `@default` and `@returns` tags of this file into docs/hooks.md.
 */
import type { Duplex } from 'node:stream';
import type { Logger } from '../observe/log.js';

/** A value or a promise of it: synchronous hooks cost no promise. */
export type MaybePromise<T> = T | Promise<T>;

/** An IP address and port. */
export interface SocketAddress {
  address: string;
  port: number;
}

/**
 * The on-ramp a connection arrived on: the forward proxy (`--proxy-listen`: CONNECT and
 * absolute-form requests), the public-hostname HTTP listener (`--http-listen`: requests
 * routed by Host to a tunnel), or an IP flow.
 */
export type Onramp = 'connect-proxy' | 'public-hostname' | 'ip-flow';

/**
 * What the engine knows of one connection (a proxy client's TCP connection, or an IP
 * flow), plus the application's context `ext`. The same object reaches every hook of
 * the connection.
 */
export interface HookContext<C = unknown> {
  /** Unique per edge process. */
  readonly id: number;
  readonly onramp: Onramp;
  /** The client as the edge sees it (for PROXY protocol connections: the address the header names). */
  readonly client: SocketAddress;
  /** The edge address the client reached. */
  readonly local: SocketAddress;
  /** When the connection arrived (ms since the epoch). */
  readonly startedAt: number;
  /**
   * The virtual network in which egress through a tunnel looks up its route, resolved once
   * by the on-ramp: the CONNECT proxy's `Oxy-Vnet` request header (an unknown one is
   * refused with a 400 before any hook), else the default vnet; an IP flow's on-ramp
   * context. Undefined when the store has no vnet at all. To send one connection into
   * another vnet, return a `tunnel` egress decision naming it.
   */
  readonly vnet: VirtualNetwork | undefined;
  /** Tenant (account) of an IP flow's on-ramp context. */
  readonly tenant?: string;
  /** The parsed PROXY protocol header, when the listener accepts them and the client sent one. */
  readonly proxyHeader?: ProxyHeader;
  /** A logger bound to this connection (`connection=<id>`). */
  readonly log: Logger;
  /** The application's per-connection context, created by `newCtx()`. */
  readonly ext: C;
}

/** A virtual network as an on-ramp resolved it: routes are keyed by `id`; `name` is for people. */
export interface VirtualNetwork {
  id: string;
  name: string;
}

// ─── PROXY protocol ────────────────────────────────────────────────────────────

/** One type-length-value field of a PROXY protocol v2 header. */
export interface ProxyTlv {
  type: number;
  value: Buffer;
}

/** A parsed PROXY protocol header (v1 text or v2 binary). */
export interface ProxyHeader {
  version: 1 | 2;
  /** `LOCAL` (v2 health checks; v1 `UNKNOWN`): no addresses, use the real peer. */
  command: 'PROXY' | 'LOCAL';
  /** `tcp4`, `tcp6`, `udp4`, `udp6`, `unix`, or `unknown`. */
  protocol: string;
  source?: SocketAddress;
  destination?: SocketAddress;
  /** v2 only; empty for v1. */
  tlvs: ProxyTlv[];
}

// ─── Decisions ─────────────────────────────────────────────────────────────────

/** Let a connection or request through. */
export interface Allow {
  action: 'allow';
}

/** Refuse it. On the CONNECT proxy `status` (default 403) and `reason` make the answer. */
export interface Block {
  action: 'block';
  status?: number;
  reason?: string;
}

/** An ingress decision: `undefined` means allow. */
export type IngressDecision = Allow | Block | undefined | void;

/** Statistics of a closed connection; fields the engine cannot know are undefined. */
export interface ConnectionStats {
  bytesIn: number;
  bytesOut: number;
  packetsIn?: number;
  packetsOut?: number;
  /**
   * TCP segments the edge retransmitted to the client (`tcpi_total_retrans`), read from the
   * kernel just before the socket closed: TCP connections the edge accepted (forward proxy,
   * public-hostname listener). Undefined where unknown (IP flows, no native addon).
   */
  retransmits?: number;
  /** Smoothed round-trip time to the client in ms (`tcpi_rtt`), read with `retransmits`; undefined where unknown. */
  rttMs?: number;
  durationMs: number;
  /** Why it ended: `closed`, `error`, `blocked`, or an IP flow end reason (`fin`, `rst`, `idle`, …). */
  reason: string;
}

/** A new IP flow as `handleFlow` sees it (from its first packet). */
export interface IpFlowInfo {
  version: 4 | 6;
  /** IP protocol number (6 TCP, 17 UDP, 1/58 ICMP). */
  protocol: number;
  src: SocketAddress;
  dst: SocketAddress;
  tenant: string;
  vnet: VirtualNetwork;
}

/**
 * What happens to a new IP flow:
 * - `drop`: its packets are dropped (`reset: true`: a TCP client gets a RST).
 * - `upgrade`: TCP to a socket, UDP to datagrams, then egress (the egress hooks decide where).
 * - `redirect`: like upgrade, with egress toward `to` instead of the flow's destination.
 * - `pass`: the packets stay IP and go to the IP off-ramp.
 */
export type FlowAction = { action: 'drop'; reset?: boolean } | { action: 'upgrade' } | { action: 'redirect'; to: SocketAddress } | { action: 'pass' };

/** `handlePacket`'s answer: keep the packet (`undefined`/`'keep'`), `'drop'` it, or a replacement. */
export type PacketAction = 'keep' | 'drop' | Buffer | undefined | void;

/** The head of a CONNECT request. */
export interface ConnectRequestHead {
  /** `host:port` as the client wrote it. */
  authority: string;
  host: string;
  port: number;
  /** Header pairs in arrival order, names as sent. */
  headers: [string, string][];
}

/** A CONNECT response before it is written; hooks may change every field. */
export interface ConnectResponse {
  status: number;
  statusText: string;
  headers: [string, string][];
}

/** A CONNECT request decision: `undefined` means allow. */
export type ConnectDirective = Allow | Block | undefined | void;

/** A body rewrite: receives the body's chunks, yields the chunks to send instead. */
export type BodyTransform = (chunks: AsyncIterable<Buffer>) => AsyncIterable<Buffer | string>;

/**
 * A proxied HTTP request: absolute-form through the forward proxy, or a request to a public
 * hostname. Headers are the client's, in arrival order, names as sent; hop-by-hop headers
 * are dropped after the hook (and on the public-hostname listener `X-Forwarded-For`/`-Proto`
 * are set then).
 */
export interface HttpRequestHead {
  method: string;
  /**
   * Absolute URL (`http://host:port/path?query`). On the public-hostname listener the host is
   * the request's Host: a hook that changes it sends the request to the tunnel serving the
   * new host (and the Host header follows).
   */
  url: string;
  headers: [string, string][];
}

export interface HttpResponseHead {
  status: number;
  headers: [string, string][];
}

/** A response the hook makes itself; the request does not leave the edge. */
export interface HttpSynthetic {
  respond: { status: number; headers?: [string, string][]; body?: string | Buffer };
}

/** `handleRequest`'s answer: `undefined` sends the (possibly mutated) head on; `body` rewrites the body as it streams. */
export type RequestOutcome = { body?: BodyTransform } | HttpSynthetic | undefined | void;

/** `handleResponse`'s answer: `undefined` sends the (possibly mutated) head on; `body` rewrites the body as it streams. */
export type ResponseOutcome = { body?: BodyTransform } | undefined | void;

/** Where a connection wants to go: the host the client named and, once resolved, an IP. */
export interface EgressTarget {
  /** A hostname or an IP literal, as the client asked. */
  host: string;
  port: number;
  /** The upstream IP the engine will use (after DNS and `handleUpstreamIps`). */
  ip: string;
  /** All candidate IPs, in order. */
  ips: string[];
}

/** An IP off-ramp for `downgrade` egress: packets of the downgraded stream go to `send`; replies come back through `onPacket`. */
export interface IpOffRamp {
  send(packet: Buffer): void;
  /** The engine registers its receiver here; the off-ramp calls it with each reply packet. */
  onPacket(receive: (packet: Buffer) => void): void;
}

/**
 * Where a connection egresses:
 * - `block`: refused (CONNECT: 403 with `Proxy-Status: …; error=destination_ip_prohibited`).
 * - `direct`: a TCP connection from the edge host (default address: the target's).
 * - `tunnel`: through the tunnel whose route covers the address in `vnet` (default: the
 *   context's vnet, else the default vnet).
 * - `downgrade`: the stream leaves as IP packets (TCP built by the kernel in the edge's
 *   namespace) to `offRamp`, with the client's tuple toward `address` (default: the target).
 */
export type EgressDecision =
  | Block
  | { action: 'direct'; address?: string; port?: number }
  | { action: 'tunnel'; vnet?: string; address?: string; port?: number }
  | { action: 'downgrade'; offRamp: IpOffRamp; address?: string; port?: number };

/** What `handleConnectionEstablished` learns: the address actually connected to, and how. */
export interface EstablishedInfo {
  upstream: SocketAddress;
  via: 'direct' | 'tunnel' | 'downgrade';
  /** For `tunnel`: the route's network and the tunnel's name. */
  route?: { network: string; tunnelName: string; vnetId: string };
}

/** A connection an override made; the engine owns it from then on. */
export type ConnectedSocket = Duplex;

/** A UDP association an override made: `send` datagrams, `onMessage` for replies. */
export interface UdpAssociation {
  send(payload: Buffer): void;
  onMessage(receive: (payload: Buffer) => void): void;
  close(): void;
}

/** The engine's own UDP associations also tell when the far side ended (a tunnel stream closed). */
export interface EngineUdpAssociation extends UdpAssociation {
  onClose(fn: () => void): void;
}

/** What the tunnel pipeline knows besides the two sockets. */
export interface PipelineInfo {
  /** SNI of the client's TLS ClientHello, if it sent one and `shouldInterceptHttps` ran. */
  sni?: string;
  /** What `shouldInterceptHttps` answered. */
  intercept: boolean;
  upstream: SocketAddress;
}

// ─── Hook families ─────────────────────────────────────────────────────────────

/** Per L4 connection: admission, and statistics at the end. */
export interface IngressHook<C = unknown> {
  /**
   * Decides whether a new L4 connection may proceed.
   * @fires once per TCP connection of the forward proxy and of the public-hostname listener, after `newCtx` and the PROXY header (if any), before any byte is parsed as HTTP; for IP flows after `handleFlow` chose upgrade or redirect.
   * @default allow
   * @returns `{ action: 'block' }` closes the connection (IP: the flow is dropped); `undefined` or `{ action: 'allow' }` continues.
   */
  handleConnection?(ctx: HookContext<C>): MaybePromise<IngressDecision>;

  /**
   * Reports a connection's end with its statistics (bytes each way, duration; packets for IP flows; retransmits and RTT for the TCP connections the edge accepted).
   * @fires once per connection that `handleConnection` saw, after both directions closed; last hook of the connection. Same on-ramps as `handleConnection`; on the forward proxy and the public-hostname listener, implementing it makes the edge read the socket's TCP_INFO before it closes.
   * @default nothing
   * @returns nothing; errors are logged.
   */
  handleConnectionClose?(stats: ConnectionStats, ctx: HookContext<C>): void;
}

/** IP flows (the IP on-ramps): per flow and per packet. Synchronous: they run on the packet path. */
export interface IpFlowHook<C = unknown> {
  /**
   * Decides a new IP flow from its first packet; memoized for the flow's life.
   * @fires once per new flow, synchronously, after `newCtx`; before `ingress.handleConnection`.
   * @default `upgrade` (TCP, UDP, ICMP echo); other protocols `drop`
   * @returns a {@link FlowAction}: drop (optionally reset), upgrade, redirect to another address, or pass as IP.
   */
  handleFlow?(flow: IpFlowInfo, packet: Buffer, ctx: HookContext<C>): FlowAction | undefined | void;

  /**
   * Sees every later packet from the client of a flow that `handleFlow` did not drop (the first packet is `handleFlow`'s), before the engine.
   * @fires per packet after the first, synchronously; recorded once in traces.
   * @default keep the packet unchanged
   * @returns `'drop'` to drop it, a Buffer to send instead (same flow: keep the 5-tuple), `undefined` to keep it.
   */
  handlePacket?(packet: Buffer, ctx: HookContext<C>): PacketAction;
}

/** Connections that carry a PROXY protocol header (`edge run --proxy-protocol`: the forward proxy and the public-hostname listener expect one). */
export interface ProxyProtocolHook<C = unknown> {
  /**
   * Hands over the parsed PROXY header (addresses and TLVs) of a new connection.
   * @fires once per connection whose listener expects PROXY headers (forward proxy, public-hostname listener), after the header was parsed and `ctx.client` set from it; before `ingress.handleConnection`. A connection without a valid header is closed (and logged) before any hook but `newCtx`.
   * @default accept the header
   * @returns `{ action: 'block' }` closes the connection; `undefined` continues.
   */
  handleConnection?(header: ProxyHeader, ctx: HookContext<C>): MaybePromise<IngressDecision>;
}

/** What happens to the bytes after a CONNECT (or an upgraded flow) is connected. */
export interface TunnelHook<C = unknown> {
  /**
   * Decides, from the TLS SNI of the client's first bytes, whether to intercept HTTPS. An intercepted connection goes to `appTunnelPipeline` (the engine mints no certificates).
   * @fires once per CONNECT tunnel (after the 200 is written) and per upgraded TCP IP flow (after egress connected), when the first bytes arrive: the client's (`sni` from its ClientHello, if any) or, for protocols where the server speaks first, the upstream's (`sni` undefined, at once); only if implemented (otherwise nothing waits for them).
   * @default false (splice)
   * @returns `true` to intercept.
   */
  shouldInterceptHttps?(sni: string | undefined, ctx: HookContext<C>): MaybePromise<boolean>;

  /**
   * Takes over a connected tunnel: receives the client and upstream sockets and moves the bytes itself (inspect, rewrite, terminate TLS…). The connection ends when the promise settles and both sockets closed.
   * @fires once per tunnel after `handleProxyConnectResponse` (and `shouldInterceptHttps`), instead of the engine's splice.
   * @default splice both sockets (with half-close)
   * @returns a promise that settles when the application is done.
   */
  appTunnelPipeline?(client: Duplex, upstream: Duplex, info: PipelineInfo, ctx: HookContext<C>): MaybePromise<void>;
}

/** HTTP requests: CONNECT and absolute-form requests on the forward proxy; requests to public hostnames on the public-hostname listener. */
export interface HttpRequestHook<C = unknown> {
  /**
   * Sees a CONNECT request's head (authority, headers such as `Proxy-Authorization`) and decides whether to go on.
   * @fires once per CONNECT request, after `ingress.handleConnection`, before any egress hook.
   * @default allow
   * @returns `{ action: 'block', status?, reason? }` answers with that status (default 403); `undefined` continues.
   */
  handleProxyConnectRequest?(head: ConnectRequestHead, ctx: HookContext<C>): MaybePromise<ConnectDirective>;

  /**
   * Sees (and may change) the response to a CONNECT before it is written: status and headers, e.g. RFC 9209 `Proxy-Status`.
   * @fires once per CONNECT request that reached egress, after `egress.handleConnectionEstablished` (or after the failure that makes a 4xx/5xx answer).
   * @default write the response unchanged (`200 Connection Established`)
   * @returns nothing: mutate `res`.
   */
  handleProxyConnectResponse?(res: ConnectResponse, ctx: HookContext<C>): MaybePromise<void>;

  /**
   * Sees (and may rewrite) a proxied HTTP request: mutate `head` (method, URL, headers), return a body rewrite, or answer it locally.
   * @fires forward proxy: once per absolute-form request, after `ingress.handleConnection` for its connection, before the egress hooks. Public-hostname listener: once per request (upgrades too), after `ingress.handleConnection`, before the request goes into the tunnel (the URL's host picks it). A throw fails only that request (502).
   * @default send the request on unchanged
   * @returns `{ body }` to rewrite the body as it streams, `{ respond }` to answer without an upstream, `undefined` to send it on. On upgrade requests (WebSocket, `Upgrade: tcp`) a body rewrite is ignored: after the 101 the bytes belong to the upgraded protocol.
   */
  handleRequest?(head: HttpRequestHead, ctx: HookContext<C>): MaybePromise<RequestOutcome>;

  /**
   * Sees (and may rewrite) the upstream's response: mutate `head` (status, headers) or return a body rewrite.
   * @fires once per proxied request, when the upstream's response head arrived (forward proxy: from the origin; public-hostname listener: from the tunnel, a 101 included), before it is written to the client; not for `{ respond }` answers.
   * @default send the response on unchanged
   * @returns `{ body }` to rewrite the body as it streams; `undefined` to send it on. Ignored on upgrade responses, as for requests.
   */
  handleResponse?(head: HttpResponseHead, ctx: HookContext<C>): MaybePromise<ResponseOutcome>;
}

/** Where connections leave the edge, and how. */
export interface EgressHook<C = unknown> {
  /**
   * Resolves a hostname instead of the system resolver.
   * @fires for targets named by a hostname (not an IP literal), before `handleUpstreamIps`.
   * @default the system resolver (`dns.lookup`, all addresses)
   * @returns the IP addresses to use (at least one; none fails the connection with 502).
   */
  dnsResolveOverride?(host: string, ctx: HookContext<C>): MaybePromise<string[]>;

  /**
   * Sees (and may reorder, filter or replace) the upstream IPs before the engine decides and connects.
   * @fires once per egress, after DNS (also for IP literals: a list of one), before `handleConnection`.
   * @default keep the IPs
   * @returns the IPs to use (`undefined`: unchanged; empty: the connection fails with 502).
   */
  handleUpstreamIps?(ips: string[], target: { host: string; port: number }, ctx: HookContext<C>): MaybePromise<string[] | undefined | void>;

  /**
   * Decides how a connection leaves: blocked, directly from the edge host, through a tunnel, or downgraded to IP packets.
   * @fires once per egress, after `handleUpstreamIps`, before connecting.
   * @default `tunnel` when a route in the context's vnet (default vnet if unset) covers the IP, else `direct`
   * @returns an {@link EgressDecision}; `undefined` for the default.
   */
  handleConnection?(target: EgressTarget, ctx: HookContext<C>): MaybePromise<EgressDecision | undefined | void>;

  /**
   * Makes the TCP connection for `direct` egress instead of the engine.
   * @fires for `direct` decisions, after `handleConnection`.
   * @default `net.connect` to the address
   * @returns a connected duplex (the engine owns it from then on), or `undefined` to let the engine connect.
   */
  tcpConnectOverride?(upstream: SocketAddress, ctx: HookContext<C>): MaybePromise<ConnectedSocket | undefined | void>;

  /**
   * Makes the UDP association for `direct` egress of an upgraded UDP flow instead of the engine.
   * @fires for UDP flows with a `direct` decision, after `handleConnection`.
   * @default a connected `dgram` socket to the address
   * @returns a {@link UdpAssociation}, or `undefined` to let the engine make one.
   */
  udpConnectOverride?(upstream: SocketAddress, ctx: HookContext<C>): MaybePromise<UdpAssociation | undefined | void>;

  /**
   * Reports the upstream connection once it is made: the address really connected to, and how.
   * @fires once per successful egress, right after the connection was made; before `http.handleProxyConnectResponse`.
   * @default nothing
   * @returns nothing (an event).
   */
  handleConnectionEstablished?(info: EstablishedInfo, ctx: HookContext<C>): void;
}

/** The application across process restarts. */
export interface AppLifecycleHook {
  /**
   * Serializes the application's state for the next process (JSON). `oxyctl edge run` writes it to `$OXY_HOME/edge/hooks-state.json` on a graceful stop; the next start passes it as `parentState` and removes the file.
   * @fires once, on a graceful shutdown (SIGTERM/SIGINT), after the listeners closed.
   * @default no state (the next start gets `parentState` undefined)
   * @returns any JSON-serializable value.
   */
  stateForRestart?(): MaybePromise<unknown>;
}

/** Everything an application can implement. Every member is optional. */
export interface Hooks<C = unknown> {
  /**
   * Creates the per-connection context (the opaque extension passed as `ctx.ext`).
   * @fires once per connection (or IP flow), first of all its hooks.
   * @default `{}`
   * @returns the context value.
   */
  newCtx?(): C;
  ingress?: IngressHook<C>;
  ipFlow?: IpFlowHook<C>;
  proxyProtocol?: ProxyProtocolHook<C>;
  tunnel?: TunnelHook<C>;
  http?: HttpRequestHook<C>;
  egress?: EgressHook<C>;
  lifecycle?: AppLifecycleHook;
}

/** What `start` receives. */
export interface HookSettings {
  /** The module's path as given to `--hooks`. */
  module: string;
  /** The data directory (OXY_HOME). */
  home: string;
  /** The edge's location name. */
  location: string;
  /** A logger for the application (`hooks=<module>`). */
  log: Logger;
  /**
   * The edge's own IP network as an off-ramp for `downgrade` egress: the stream leaves as IP
   * packets with the client's tuple, which enter the edge's IP routing in the connection's
   * tenant and vnet (the IP-flow hooks do not see them again) and follow the route to the
   * tunnel that serves the destination. Needs the edge's IP path (`--ip-tunnel-listen` or
   * `--gue-listen`); throws otherwise.
   */
  vnetOffRamp(ctx: HookContext): IpOffRamp;
}

/** The contract of a `--hooks` module: `export async function start(settings, parentState) { return { … } }`. */
export type HooksModuleStart<C = unknown> = (settings: HookSettings, parentState: unknown) => MaybePromise<Hooks<C>>;

/** Identity helper that types a hooks object for a context type: `defineHooks<MyCtx>({ … })`. */
export function defineHooks<C>(hooks: Hooks<C>): Hooks<C> {
  return hooks;
}
