/**
 * The connector's supervisor: keeps `haConnections` registered connections to the edge.
 * Each slot dials, registers over the control stream, serves streams until the connection
 * ends, then reconnects with exponential backoff and jitter. A refusal (the edge refuses the
 * secret or the tunnel, or its CA does not match the pin) is fatal when every edge refuses —
 * with one edge, at once; with several, a refusing edge is left for the others and retried
 * (spread.ts), as cloudflared keeps its other connections when one index's registration fails.
 * `stop()` drains: no new requests, in-flight ones get the grace period, then connections close.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { isOxyError, OxyError } from '../../core/errors.js';
import type { Logger } from '../observe/log.js';
import { TunnelCloseCode } from '../protocol/codes.js';
import type { ControlChannel, ControlMessage } from '../protocol/control.js';
import { registerConnection, type Registered } from '../protocol/registration.js';
import type { TunnelConnection, TunnelStream } from '../transport/types.js';
import { watchSilence } from '../transport/common.js';
import type { EdgeSpread } from './spread.js';
import type { StreamHandler } from './stream-handler.js';

export type Dialer = (connIndex: number, signal: AbortSignal) => Promise<TunnelConnection>;

export interface ConnectorOptions {
  tunnelId: string;
  secret: Buffer;
  dial: Dialer;
  handler: StreamHandler;
  log: Logger;
  version: string;
  haConnections?: number;
  connectorId?: string;
  /** First retry delay; doubles per failure up to maxRetryDelayMs, with jitter. */
  retryBaseMs?: number;
  maxRetryDelayMs?: number;
  /**
   * cloudflared's --retries, per connection as cloudflared counts it (supervisor/tunnel.go: one
   * backoff per connection index, reset when it registers): a slot whose connection failed or
   * dropped and then failed this many reconnects in a row gives up. Before any registration
   * that stops the connector (fatal, as cloudflared's first connection); later the slot stays
   * down while others serve, and when every slot gave up the connector stops (fatal) where
   * cloudflared would idle with no connection. Undefined: retry forever.
   */
  maxRetries?: number;
  features?: string[];
  /** With several edges: where each slot belongs, so slots that moved away when their edge died move back when it returns. */
  spread?: EdgeSpread;
  /** Messages the edge sends on a connection's control stream after registration (e.g. routes). */
  onControlMessage?: (message: ControlMessage, connIndex: number) => void;
}

interface Slot {
  conn?: TunnelConnection;
  control?: ControlChannel;
  connectionId?: string;
  registered: boolean;
  /** The edge `conn` goes to (its index in the spread), with several edges. */
  edge?: number;
  /** The edge's streams in flight on `conn`. */
  streams?: Set<TunnelStream>;
}

/** Answers that redialling the same edge at once cannot change: the edge refuses this connector. */
const isRefusal = (err: unknown): err is OxyError => isOxyError(err, 'OXY_ERR_TUNNEL_UNAUTHORIZED') || isOxyError(err, 'OXY_ERR_TUNNEL_PIN_MISMATCH');
/** The longest pause between two tries of a home edge that refuses the tunnel. */
const REFUSING_RETRY_MAX_MS = 60_000;

/**
 * How often an idle connection asks the edge for an answer, and how long without one means the edge
 * is gone (`OXY_CONNECTOR_SILENT_MS` sets it longer where an edge's restart may take longer, e.g. tests on a loaded machine).
 */
const PROBE_EVERY_MS = 1000;
const SILENT_MS = Number(process.env.OXY_CONNECTOR_SILENT_MS) || 5000;
/** A try to move back gives up on a home edge that does not complete the handshake in this time. */
const RETURN_DIAL_TIMEOUT_MS = 10_000;
/** A connection replaced by a move back closes once it has carried no request for this long… */
const RETIRE_QUIET_MS = 500;
/** …or after this, whatever still runs on it (a long download, a WebSocket). */
const RETIRE_GRACE_MS = 30_000;

export interface ConnectorEvents {
  registered: [connIndex: number, connectionId: string, info: { location: string; protocol: string }];
  unregistered: [connIndex: number, info: { connectionId: string; protocol: string }];
  /** A dial or registration failed (the slot retries, unless the failure was fatal). */
  failed: [connIndex: number, err: unknown];
  /** Unrecoverable (e.g. the edge refused the secret): the connector stopped. */
  fatal: [Error];
}

export class Connector extends EventEmitter<ConnectorEvents> {
  readonly connectorId: string;
  readonly #slots: Slot[];
  readonly #stop = new AbortController();
  #loops: Promise<void>[] = [];
  #everRegistered = false;
  #gaveUp = 0;
  /** Connections replaced by a move back, draining. */
  readonly #retiring = new Set<TunnelConnection>();

  constructor(private readonly o: ConnectorOptions) {
    super();
    this.connectorId = o.connectorId ?? randomUUID();
    this.#slots = Array.from({ length: o.haConnections ?? 4 }, () => ({ registered: false }));
  }

  get readyConnections(): number {
    return this.#slots.filter((s) => s.registered).length;
  }

  /** The live connections, for tests and metrics. */
  connections(): (TunnelConnection | undefined)[] {
    return this.#slots.map((s) => (s.registered ? s.conn : undefined));
  }

  start(): void {
    this.#loops = this.#slots.map((_, i) => this.#run(i));
  }

  async #run(connIndex: number): Promise<void> {
    const slot = this.#slots[connIndex];
    const signal = this.#stop.signal;
    const base = this.o.retryBaseMs ?? 1000;
    let failures = 0;
    let lastError: Error | undefined;
    while (!signal.aborted) {
      const edge = this.o.spread?.at(connIndex);
      try {
        slot.conn = await this.o.dial(connIndex, signal);
        const reg = await this.#register(slot.conn, connIndex);
        this.#everRegistered = true;
        failures = 0;
        lastError = undefined;
        if (edge !== undefined) this.#accepted(edge);
        this.#serve(connIndex, slot.conn, reg, edge);
        // Serve until the slot's connection ends. A move back replaces it (the old one drains on its own).
        let conn = slot.conn;
        let closed = await conn.closed;
        while (slot.conn !== conn) closed = await (conn = slot.conn).closed;
        slot.registered = false;
        this.emit('unregistered', connIndex, { connectionId: slot.connectionId ?? '', protocol: conn.protocol });
        if (signal.aborted) break;
        if (slot.edge !== undefined) this.o.spread?.lost(connIndex, slot.edge);
        this.o.log.warn({ connIndex, code: closed.code, reason: closed.reason }, 'Connection terminated');
      } catch (err) {
        slot.registered = false;
        slot.conn?.close(TunnelCloseCode.NO_ERROR, 'registration failed');
        if (signal.aborted) break;
        this.emit('failed', connIndex, err);
        if (isRefusal(err)) {
          if (this.#refused(connIndex, edge, err)) break;
        } else {
          this.o.log.error({ connIndex, err, ip: slot.conn?.remoteAddress }, 'Unable to establish connection with the edge');
          // A dial that failed moved the slot on already; an edge that failed the registration is left too.
          if (edge !== undefined) this.o.spread?.lost(connIndex, edge);
        }
        lastError = err as Error;
      }
      if (this.o.maxRetries !== undefined && failures >= this.o.maxRetries) {
        const why = lastError ? `: ${lastError.message}` : '';
        if (!this.#everRegistered) {
          this.#fatal(`Could not connect to the edge after ${failures + 1} attempts (--retries ${this.o.maxRetries})${why}`, lastError);
          break;
        }
        this.o.log.error(
          { connIndex, retries: this.o.maxRetries },
          'Connection gave up: it dropped and every reconnect since failed (--retries); not retrying',
        );
        if (++this.#gaveUp === this.#slots.length) {
          this.#fatal(
            `Every connection to the edge dropped and failed ${this.o.maxRetries} reconnects in a row (--retries ${this.o.maxRetries})${why}`,
            lastError,
          );
        }
        break;
      }
      const delay = Math.min(this.o.maxRetryDelayMs ?? 60_000, base * 2 ** failures++) * (0.5 + Math.random() * 0.5);
      this.o.log.info({ connIndex, retryingIn: `${(delay / 1000).toFixed(2)}s` }, 'Retrying connection');
      await sleep(delay, undefined, { signal }).catch(() => undefined);
    }
  }

  /**
   * An edge refused the slot. With other edges that do not refuse, it is logged (loudly the first
   * time) and left; once every edge refuses, the connector stops. True when it stopped.
   */
  #refused(connIndex: number, edge: number | undefined, err: OxyError): boolean {
    const spread = this.o.spread;
    const verdict = spread && edge !== undefined ? spread.refused(connIndex, edge, err) : { first: true, all: true };
    if (verdict.all) {
      this.o.log.error({ connIndex, err }, 'Register tunnel error from server side');
      // One edge: its own error, as always. Several: what each of them said.
      const fatal = (spread?.names.length ?? 1) > 1 ? new OxyError(err.code, `every edge refused the tunnel: ${spread!.refusals()}`, { cause: err }) : err;
      this.emit('fatal', fatal);
      this.#stop.abort();
      return true;
    }
    const fields = { connIndex, edge: spread!.names[edge!], err };
    if (verdict.first) this.o.log.error(fields, 'The edge refused the tunnel; using the other edges and retrying it with backoff');
    else this.o.log.debug(fields, 'The edge still refuses the tunnel');
    return false;
  }

  #accepted(edge: number): void {
    if (this.o.spread?.accepted(edge)) this.o.log.info({ edge: this.o.spread.names[edge] }, 'The edge accepts the tunnel again');
  }

  #register(conn: TunnelConnection, connIndex: number): Promise<Registered> {
    return registerConnection(conn, {
      tunnelId: this.o.tunnelId,
      connectorId: this.connectorId,
      connIndex,
      secret: this.o.secret,
      clientVersion: this.o.version,
      features: this.o.features,
    });
  }

  /** Puts a registered connection into its slot and serves the edge's streams on it. */
  #serve(connIndex: number, conn: TunnelConnection, reg: Registered, edge: number | undefined): void {
    const slot = this.#slots[connIndex];
    const streams = new Set<TunnelStream>();
    Object.assign(slot, { conn, control: reg.control, connectionId: reg.connectionId, registered: true, edge, streams });
    if (this.o.onControlMessage) {
      reg.control.on('message', (m) => this.o.onControlMessage!(m, connIndex));
      if (reg.control.latestRoutes) this.o.onControlMessage(reg.control.latestRoutes, connIndex);
    }
    conn.onStream((stream) => {
      // Counted per connection, so a connection that moves back can wait for its own requests.
      streams.add(stream);
      stream.once('close', () => streams.delete(stream));
      this.o.handler.handle(stream, conn);
    });
    this.o.log.info(
      { connIndex, connection: reg.connectionId, event: 0, ip: conn.remoteAddress, location: reg.location, protocol: conn.protocol },
      'Registered tunnel connection',
    );
    this.emit('registered', connIndex, reg.connectionId, { location: reg.location, protocol: conn.protocol });
    this.#watch(connIndex, conn);
    if (this.o.spread?.away(connIndex)) void this.#returnHome(connIndex, conn);
  }

  /**
   * A killed edge over QUIC says nothing (no RST as over TCP): its connections would look alive
   * until the idle timeout (15 s). Probe each connection every PROBE_EVERY_MS, and close it once
   * SILENT_MS passed without a packet, so the slot redials (another edge, with several) now.
   * Probes go on while one is unanswered: ngtcp2 never retransmits a lost PING (its keep-alive
   * PING elicits no PTO probe; quiche's are retransmitted 0.4, 0.9, 1.7, 3.4 s later), so a
   * successor edge on the port would hear from us, and answer with a stateless reset, only if it
   * bound before our one probe went out.
   */
  #watch(connIndex: number, conn: TunnelConnection): void {
    watchSilence(conn, {
      everyMs: PROBE_EVERY_MS,
      silentMs: SILENT_MS,
      onSilent: (silent) => {
        this.o.log.warn({ connIndex, silentMs: Math.round(silent), ip: conn.remoteAddress }, 'The edge went silent; closing the connection');
        conn.close(TunnelCloseCode.TRANSPORT_LOST, 'the edge went silent');
      },
    });
  }

  /**
   * A slot serving from another edge than its own dials its home edge now and then (backoff;
   * longer after the home edge flapped: spread.ts), and once it registers there moves back
   * make-before-break: the new connection serves first, then the old one drains (the edge
   * sends it nothing new) and closes when its requests are done.
   */
  async #returnHome(connIndex: number, from: TunnelConnection): Promise<void> {
    const spread = this.o.spread!;
    const slot = this.#slots[connIndex];
    const signal = this.#stop.signal;
    const stale = () => signal.aborted || slot.conn !== from || from.isClosed;
    let delay = spread.holdMs(connIndex);
    while (!stale()) {
      await sleep(delay * (0.75 + Math.random() * 0.5), undefined, { signal }).catch(() => undefined);
      if (stale()) return;
      let next: TunnelConnection | undefined;
      try {
        next = await spread.dialHome(connIndex, AbortSignal.any([signal, AbortSignal.timeout(RETURN_DIAL_TIMEOUT_MS)]));
        const reg = await this.#register(next, connIndex);
        this.#accepted(spread.home(connIndex));
        if (stale()) {
          next.close(TunnelCloseCode.SHUTDOWN, 'not needed any more');
          return;
        }
        const home = spread.home(connIndex);
        const old = { conn: from, control: slot.control, connectionId: slot.connectionId ?? '', streams: slot.streams };
        this.o.log.info({ connIndex, from: spread.names[slot.edge ?? home], to: spread.names[home] }, 'Moving the connection back to its edge');
        spread.returned(connIndex);
        this.#serve(connIndex, next, reg, home);
        await this.#retire(connIndex, old);
        return;
      } catch (err) {
        next?.close(TunnelCloseCode.NO_ERROR, 'registration failed');
        if (signal.aborted) return;
        if (isRefusal(err)) {
          if (this.#refused(connIndex, spread.home(connIndex), err)) return;
          // A refusing edge is fixed by a person, not by the next second: try it less often.
          delay = Math.min(REFUSING_RETRY_MAX_MS, delay * 2);
          continue;
        }
        this.o.log.debug({ connIndex, edge: spread.names[spread.home(connIndex)], err }, 'The home edge does not answer yet');
        delay = Math.min(spread.timing.maxMs, delay * 2);
      }
    }
  }

  /** Drains a connection that was replaced: no new requests from the edge; closed once its own finished (at most RETIRE_GRACE_MS). */
  async #retire(
    connIndex: number,
    old: { conn: TunnelConnection; control?: ControlChannel; connectionId: string; streams?: Set<TunnelStream> },
  ): Promise<void> {
    this.#retiring.add(old.conn);
    await old.control?.drain('moved back to its own edge').catch(() => undefined);
    // The edge's answer to a probe comes after the drain it read before: it picks this connection no more.
    await Promise.race([old.conn.probe(), sleep(RETIRE_QUIET_MS)]);
    const end = Date.now() + RETIRE_GRACE_MS;
    let quietSince = Date.now();
    while (!old.conn.isClosed && Date.now() < end) {
      if ((old.streams?.size ?? 0) > 0) quietSince = Date.now();
      else if (Date.now() - quietSince >= RETIRE_QUIET_MS) break;
      await sleep(RETIRE_QUIET_MS / 4);
    }
    old.conn.close(TunnelCloseCode.SHUTDOWN, 'moved back to its own edge');
    this.#retiring.delete(old.conn);
    this.o.log.info({ connIndex, connection: old.connectionId }, 'Unregistered tunnel connection');
    this.emit('unregistered', connIndex, { connectionId: old.connectionId, protocol: old.conn.protocol });
  }

  #fatal(message: string, cause: unknown): void {
    this.emit('fatal', new OxyError('OXY_ERR_TUNNEL_UNREACHABLE', message, { cause }));
    this.#stop.abort();
  }

  /**
   * Graceful stop: refuse new requests, tell the edge to stop sending, wait for in-flight
   * streams up to `graceMs`, then close every connection.
   */
  async stop(graceMs = 30_000): Promise<void> {
    this.o.handler.accepting = false;
    this.#stop.abort();
    await Promise.all(this.#slots.map((s) => s.control?.drain('connector shutting down').catch(() => undefined)));
    if (this.o.handler.active > 0) {
      this.o.log.info({ inFlight: this.o.handler.active, gracePeriod: `${graceMs / 1000}s` }, 'Waiting for in-flight requests to finish');
      const grace = new AbortController();
      await Promise.race([this.o.handler.idle(), sleep(graceMs, undefined, { signal: grace.signal }).catch(() => undefined)]);
      grace.abort(); // a pending grace timer would keep the process alive after the streams ended
    }
    for (const conn of this.#retiring) conn.close(TunnelCloseCode.SHUTDOWN, 'connector shutting down');
    for (const [connIndex, s] of this.#slots.entries()) {
      if (s.conn && !s.conn.isClosed) {
        s.conn.close(TunnelCloseCode.SHUTDOWN, 'connector shutting down');
        this.o.log.info({ connIndex, connection: s.connectionId }, 'Unregistered tunnel connection');
      }
    }
    await Promise.all(this.#loops);
  }
}
