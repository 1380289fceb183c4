/**
 * Edge-to-edge forwarding: any edge of a store serves any hostname and private route. A
 * stream for a tunnel with no connection on this edge goes to an edge that holds one (the
 * store view's `holdersOf`, from the edge registry — memory, never a query per request) over
 * a peer link: TLS to that edge's tunnel listener with a client certificate of the shared edge
 * CA, HTTP/2 with this edge as the side that opens streams (transport/http2/dial.ts
 * dialHttp2Peer). One link per peer edge, kept open and reused; a failed dial backs off
 * (250 ms doubling to 5 s) and that edge is skipped meanwhile; a stream whose peer cannot be
 * dialed goes to another edge holding the tunnel, if there is one. An edge that died leaves
 * the holders once its heartbeat is stale (store-view.ts re-reads them every heartbeat
 * interval), and its link is closed then.
 *
 * To the on-ramps a peer is one more LiveConnection (`via` names the edge it goes to first;
 * `servedVia(stream)` the one a stream went through, after a failover too), picked
 * only when the tunnel has no local connection (registry.ts), so they open streams on it
 * as on a connector's connection. Each such stream starts with a `forward` header naming the
 * tunnel; the serving edge (`serve`) reads it and the stream's own header (an `http1` stream
 * needs a connector that serves them), splices it onto one of its *own* connections and never
 * forwards it again (one hop, no loop): holding none, it refuses the stream at once.
 * The peer link carries no datagrams: forwarded UDP flows ride records on their streams.
 */
import type { Counter } from 'prom-client';
import { OxyError } from '../../core/errors.js';
import { splitHostPort } from '../../core/address.js';
import type { TunnelHolder } from '../../store/index.js';
import type { Logger } from '../observe/log.js';
import { encodeRequestHeader, metaGet, readStreamHeader, ResponseStatus, writeResponseHeader } from '../protocol/stream-header.js';
import { dialHttp2Peer } from '../transport/http2/index.js';
import type { TunnelCloseInfo, TunnelConnection, TunnelConnectionStats, TunnelStream } from '../transport/types.js';
import { bridge } from '../util/pump.js';
import type { Siblings } from './handoff.js';
import type { LiveConnection } from './registry.js';
import type { StoreView } from './store-view.js';

/** What this edge proves itself with on peer links: the edge CA, and a peer certificate it signed (identity.ts createPeerCertificate). */
export interface PeerCredentials {
  ca: string;
  cert: string;
  key: string;
}

export interface ForwardingOptions {
  view: StoreView;
  /** This edge's id in the edge registry (never forwards to itself). */
  id: string;
  location: string;
  log: Logger;
  /** Without them this edge neither forwards nor takes peer links (no CA key in its edge directory). */
  credentials?: PeerCredentials;
  /** This edge's own connection for a tunnel (the registry's local pick); `http1`: one that serves http1 streams. */
  local: (tunnelId: string, http1: boolean) => LiveConnection | undefined;
  /** Streams forwarded, by direction: `out` to a peer, `in` served for a peer. */
  streams?: Counter<'direction'>;
  /**
   * Where to dial a holder instead of its recorded tunnel address: a sibling worker of
   * `edge run --workers` (they share that address, which lands on any of them) answers on a
   * private one. `null`: skip the holder (an address this edge shares, with no private one known).
   */
  peerAddress?: (holder: TunnelHolder) => string | null | undefined;
  /** Sibling workers (`edge run --workers`): which hold the tunnel now, told by the primary before the store view has it. */
  siblings?: Pick<Siblings, 'siblingHolders' | 'siblingHoldsAnything'>;
}

const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 5000;
const DIAL_TIMEOUT_MS = 5000;
/** How long a peer may take to send a forwarded stream's header. */
const HEADER_TIMEOUT_MS = 10_000;
/** The edge each forwarded stream went through: the picked holder's, or another's after a failover (`#open`). */
const SERVED_BY = new WeakMap<TunnelStream, { edgeId: string; location: string }>();

/** The edge that serves a stream this edge forwarded (undefined: not forwarded), for Proxy-Status and logs. */
export const servedVia = (stream: TunnelStream): { edgeId: string; location: string } | undefined => SERVED_BY.get(stream);

const NO_STATS: TunnelConnectionStats = { activeStreams: 0, queuedOpens: 0, datagramsSent: 0, datagramsReceived: 0, datagramsDropped: 0 };
const ignore = (): void => undefined;

/** One peer edge: its link (dialed on first use, redialed after a loss) and the backoff after failed dials. */
class PeerLink {
  conn?: TunnelConnection;
  #dialing?: Promise<TunnelConnection>;
  #failures = 0;
  #retryAt = 0;
  #closed = false;
  /** The LiveConnection the on-ramps see, per tunnel. */
  readonly lives = new Map<string, LiveConnection>();

  constructor(
    readonly holder: TunnelHolder,
    private readonly o: ForwardingOptions & { credentials: PeerCredentials },
  ) {}

  /** Where this peer is dialed. */
  get address(): string {
    return this.o.peerAddress?.(this.holder) ?? this.holder.tunnelAddress;
  }

  /** Open, being dialed, or due for another dial. */
  get usable(): boolean {
    return !this.#closed && ((this.conn !== undefined && !this.conn.isClosed) || this.#dialing !== undefined || Date.now() >= this.#retryAt);
  }

  get load(): number {
    return this.conn && !this.conn.isClosed ? this.conn.stats().activeStreams : 0;
  }

  /** A stream to the tunnel's connector through this peer, its `forward` header written. */
  async open(tunnelId: string): Promise<TunnelStream> {
    const conn = this.conn && !this.conn.isClosed ? this.conn : await this.#dial();
    const stream = await conn.openStream();
    // The caller's request header follows in this tick: one DATA frame for both.
    stream.cork();
    process.nextTick(() => stream.uncork());
    stream.write(
      encodeRequestHeader({
        kind: 'forward',
        destination: tunnelId,
        metadata: [
          ['Edge', this.o.id],
          ['Location', this.o.location],
        ],
      }),
    );
    this.o.streams?.inc({ direction: 'out' });
    return stream;
  }

  #dial(): Promise<TunnelConnection> {
    this.#dialing ??= (async () => {
      const { host, port } = splitHostPort(this.address);
      const { ca, cert, key } = this.o.credentials;
      try {
        const conn = await dialHttp2Peer({ host, port, ca, cert, key, timeoutMs: DIAL_TIMEOUT_MS });
        if (this.#closed) {
          conn.close();
          throw new OxyError('OXY_ERR_PEER_UNAVAILABLE', 'forwarding stopped');
        }
        this.conn = conn;
        this.#failures = 0;
        this.o.log.info({ peer: this.holder.edgeId, location: this.holder.location, address: this.address }, 'Peer link to edge open');
        void conn.closed.then((info: TunnelCloseInfo) => {
          if (this.conn === conn) this.conn = undefined;
          if (!this.#closed)
            this.o.log.info({ peer: this.holder.edgeId, location: this.holder.location, code: info.code, reason: info.reason }, 'Peer link to edge closed');
        });
        return conn;
      } catch (err) {
        this.#retryAt = Date.now() + Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.#failures++);
        this.o.log.warn({ err, peer: this.holder.edgeId, location: this.holder.location, address: this.address }, 'Could not open a peer link to edge');
        throw new OxyError('OXY_ERR_PEER_UNAVAILABLE', `The edge ${this.holder.location} could not be reached`, { cause: err });
      } finally {
        this.#dialing = undefined;
      }
    })();
    return this.#dialing;
  }

  close(): void {
    this.#closed = true;
    this.conn?.close(0, 'peer link no longer needed');
  }
}

/**
 * A peer edge as a tunnel's connection to the on-ramps: streams open through the peer link;
 * no datagrams (UDP payloads go as records on each flow's stream); closing it leaves the
 * link, which other tunnels share, alone.
 */
class ForwardedConnection implements TunnelConnection {
  readonly protocol = 'http2' as const;
  readonly role = 'edge' as const;
  readonly supportsDatagrams = false;
  readonly datagramsReliable = true;
  readonly maxDatagramSize = 0;
  readonly closed = new Promise<TunnelCloseInfo>(ignore);

  constructor(
    private readonly link: PeerLink,
    /** Opens a stream through this link, or through another holder's when this one cannot be dialed. */
    private readonly open: () => Promise<TunnelStream>,
  ) {}

  get localAddress(): string {
    return this.link.conn?.localAddress ?? '';
  }
  get localPort(): number {
    return this.link.conn?.localPort ?? 0;
  }
  get remoteAddress(): string {
    return this.link.conn?.remoteAddress ?? '';
  }
  get remotePort(): number {
    return this.link.conn?.remotePort ?? 0;
  }
  get isClosed(): boolean {
    return !this.link.usable;
  }
  openStream(): Promise<TunnelStream> {
    return this.open();
  }
  onStream(): void {}
  acceptStream(): Promise<TunnelStream> {
    return Promise.reject(new OxyError('OXY_ERR_TUNNEL_CLOSED', 'A forwarded connection takes no streams'));
  }
  sendDatagram(): boolean {
    throw new OxyError('OXY_ERR_TUNNEL_DATAGRAMS_UNSUPPORTED', 'Forwarded flows carry no datagrams');
  }
  onDatagram(): void {}
  close(): void {}
  stats(): TunnelConnectionStats {
    return this.link.conn?.stats() ?? NO_STATS;
  }
  activeStreams(): number {
    return this.link.conn?.activeStreams() ?? 0;
  }
  probe(): Promise<boolean> {
    return this.link.conn?.probe() ?? Promise.resolve(false);
  }
  unansweredMs(): number {
    return this.link.conn?.unansweredMs() ?? 0;
  }
}

export class Forwarding {
  /** Peer links this edge dialed, by peer edge id. */
  readonly #links = new Map<string, PeerLink>();
  /** Peer links other edges opened to this one. */
  readonly #served = new Set<TunnelConnection>();
  #stopped = false;

  constructor(private readonly o: ForwardingOptions) {
    // Links to edges that no longer hold anything (or died) are closed at the next reload.
    const prune = (reloaded: boolean) => {
      for (const [edgeId, link] of this.#links) {
        if (!o.view.holdsAnything(edgeId) && !o.siblings?.siblingHoldsAnything(edgeId)) {
          link.close();
          this.#links.delete(edgeId);
        } else if (reloaded) {
          // The fast path tries http1 streams again after a change (a connector that serves them may have registered there).
          for (const live of link.lives.values()) live.http1 = true;
        }
      }
    };
    o.view.on('reload', () => prune(true));
    o.view.on('holders', () => prune(false));
  }

  /** Whether this edge forwards and takes peer links. */
  get enabled(): boolean {
    return this.o.credentials !== undefined;
  }

  /** A peer edge that holds the tunnel, as a connection to open streams on; undefined: none reachable. */
  pick(tunnelId: string): LiveConnection | undefined {
    const best = this.#pickLink(tunnelId);
    if (!best) return undefined;
    let live = best.lives.get(tunnelId);
    if (!live) {
      live = {
        id: `peer:${best.holder.edgeId}`,
        tunnelId,
        connectorId: '',
        connIndex: -1,
        conn: new ForwardedConnection(best, () => this.#open(tunnelId, best)),
        draining: false,
        // The public listener's fast path may ride it: the serving edge relays an http1 stream
        // only to a connection that serves them; holding only older connectors, it ends the stream
        // unread and the request takes the per-request path (http1-fast.ts).
        http1: true,
        via: { edgeId: best.holder.edgeId, location: best.holder.location },
      };
      best.lives.set(tunnelId, live);
    }
    return live;
  }

  /**
   * A stream through `first`; when its edge cannot be dialed (refused, timed out), through
   * another edge holding the tunnel — nothing has been sent yet, so no request is repeated.
   */
  async #open(tunnelId: string, first: PeerLink): Promise<TunnelStream> {
    const tried = new Set<PeerLink>();
    for (let link: PeerLink | undefined = first; ; ) {
      tried.add(link);
      try {
        const stream = await link.open(tunnelId);
        SERVED_BY.set(stream, { edgeId: link.holder.edgeId, location: link.holder.location });
        return stream;
      } catch (err) {
        link = this.#pickLink(tunnelId, tried);
        if (!link) throw err;
        this.o.log.debug({ tunnelID: tunnelId, peer: link.holder.edgeId, location: link.holder.location }, 'Forwarding to another edge that holds the tunnel');
      }
    }
  }

  /** The edges holding the tunnel: the store view's, and the sibling workers the primary named that it does not show yet. */
  #holders(tunnelId: string): readonly TunnelHolder[] {
    const known = this.o.view.holdersOf(tunnelId);
    const siblings = this.o.siblings?.siblingHolders(tunnelId);
    if (!siblings?.length) return known;
    const more = siblings.filter((s) => !known.some((h) => h.edgeId === s.edgeId)).map((s) => ({ tunnelId, location: this.o.location, ...s }));
    return more.length ? [...known, ...more] : known;
  }

  /** The least loaded usable link to an edge holding the tunnel, other than `skip`'s. */
  #pickLink(tunnelId: string, skip?: Set<PeerLink>): PeerLink | undefined {
    const credentials = this.o.credentials;
    if (!credentials || this.#stopped) return undefined;
    let best: PeerLink | undefined;
    for (const holder of this.#holders(tunnelId)) {
      if (holder.edgeId === this.o.id || !holder.tunnelAddress || this.o.peerAddress?.(holder) === null) continue;
      let link = this.#links.get(holder.edgeId);
      if (!link || link.holder.tunnelAddress !== holder.tunnelAddress) {
        link?.close();
        link = new PeerLink(holder, { ...this.o, credentials });
        this.#links.set(holder.edgeId, link);
      }
      if (link.usable && !skip?.has(link) && (!best || link.load < best.load)) best = link;
    }
    return best;
  }

  /**
   * A peer link another edge opened (its certificate checked by the listener): each stream
   * names a tunnel and is spliced onto one of this edge's own connections of it — never
   * forwarded on — or refused at once when this edge holds none.
   */
  serve(conn: TunnelConnection, peerId: string): void {
    if (!this.enabled || this.#stopped) {
      conn.close(0x1, 'this edge takes no peer links');
      return;
    }
    this.#served.add(conn);
    this.o.log.info({ peer: peerId, ip: conn.remoteAddress }, 'Peer link from edge accepted');
    conn.onStream((stream) => void this.#relay(stream, peerId));
    void conn.closed.then((info) => {
      this.#served.delete(conn);
      this.o.log.info({ peer: peerId, code: info.code, reason: info.reason }, 'Peer link from edge closed');
    });
  }

  async #relay(stream: TunnelStream, peerId: string): Promise<void> {
    stream.on('error', ignore);
    // Two headers in a row: the forward header naming the tunnel, then the stream's own.
    const readHeader = () =>
      readStreamHeader(stream, { expect: 'request', timeoutMs: HEADER_TIMEOUT_MS }).catch((err) => {
        this.o.log.debug({ err, peer: peerId }, 'Unreadable forwarded stream');
        stream.destroy();
        return undefined;
      });
    const header = await readHeader();
    if (!header) return;
    const refuse = (status: number, message: string) => {
      writeResponseHeader(stream, { status, message, metadata: [] });
      stream.end();
    };
    if (header.kind !== 'forward') return refuse(ResponseStatus.BAD_REQUEST, 'a peer link carries forward streams only');
    const tunnelId = header.destination;
    const from = metaGet(header.metadata, 'Location') ?? peerId;
    // The stream as it goes to the connector: its kind says which connections can take it.
    const inner = await readHeader();
    if (!inner) return;
    const http1 = inner.kind === 'http1';
    const live = this.o.local(tunnelId, http1);
    // An http1 stream has no response header: refused by a reset (its client gets a 502).
    const fail = (message: string) => (http1 ? void stream.destroy() : refuse(ResponseStatus.DIAL_FAILED, message));
    if (!live && http1 && this.o.local(tunnelId, false)) {
      // Only connectors without http1 streams here: ended unread, the peer's fast path sends the request per request.
      this.o.log.debug({ tunnelID: tunnelId, from }, 'Forwarded http1 stream ended: the connectors here serve requests one stream each');
      stream.end();
      return;
    }
    if (!live) {
      this.o.log.debug({ tunnelID: tunnelId, from, kind: inner.kind }, 'Forwarded stream refused: no connection of the tunnel on this edge');
      return fail(`The edge ${this.o.location} holds no connection of the tunnel any more`);
    }
    let out: TunnelStream;
    try {
      out = await live.conn.openStream();
    } catch {
      return fail(`The edge ${this.o.location} could not open a stream to the connector`);
    }
    out.on('error', ignore);
    out.write(encodeRequestHeader(inner));
    this.o.streams?.inc({ direction: 'in' });
    this.o.log.debug({ tunnelID: tunnelId, from, kind: inner.kind, connection: live.id }, 'Serving a forwarded stream');
    await bridge(stream, out);
  }

  stop(): void {
    this.#stopped = true;
    for (const link of this.#links.values()) link.close();
    this.#links.clear();
    for (const conn of this.#served) conn.close(0x102, 'edge shutting down');
  }
}
