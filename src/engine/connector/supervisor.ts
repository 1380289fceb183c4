/**
 * The connector's supervisor: keeps `haConnections` registered connections to the edge.
 * Each slot dials, registers over the control stream, serves streams until the connection
 * ends, then reconnects with exponential backoff and jitter. A refused secret is fatal
 * (retrying cannot help). `stop()` drains: no new requests, in-flight ones get the grace
 * period, then connections close.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { isOxyError, OxyError } from '../../core/errors.js';
import type { Logger } from '../observe/log.js';
import { TunnelCloseCode } from '../protocol/codes.js';
import type { ControlChannel, ControlMessage } from '../protocol/control.js';
import { registerConnection } from '../protocol/registration.js';
import type { TunnelConnection } from '../transport/types.js';
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
  /** Messages the edge sends on a connection's control stream after registration (e.g. routes). */
  onControlMessage?: (message: ControlMessage, connIndex: number) => void;
}

interface Slot {
  conn?: TunnelConnection;
  control?: ControlChannel;
  connectionId?: string;
  registered: boolean;
}

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
      try {
        slot.conn = await this.o.dial(connIndex, signal);
        const reg = await registerConnection(slot.conn, {
          tunnelId: this.o.tunnelId,
          connectorId: this.connectorId,
          connIndex,
          secret: this.o.secret,
          clientVersion: this.o.version,
          features: this.o.features,
        });
        Object.assign(slot, { control: reg.control, connectionId: reg.connectionId, registered: true });
        this.#everRegistered = true;
        if (this.o.onControlMessage) {
          reg.control.on('message', (m) => this.o.onControlMessage!(m, connIndex));
          if (reg.control.latestRoutes) this.o.onControlMessage(reg.control.latestRoutes, connIndex);
        }
        failures = 0;
        lastError = undefined;
        const conn = slot.conn;
        conn.onStream((stream) => this.o.handler.handle(stream, conn));
        this.o.log.info(
          { connIndex, connection: reg.connectionId, event: 0, ip: slot.conn.remoteAddress, location: reg.location, protocol: slot.conn.protocol },
          'Registered tunnel connection',
        );
        this.emit('registered', connIndex, reg.connectionId, { location: reg.location, protocol: conn.protocol });
        const closed = await slot.conn.closed;
        slot.registered = false;
        this.emit('unregistered', connIndex, { connectionId: reg.connectionId, protocol: conn.protocol });
        if (signal.aborted) break;
        this.o.log.warn({ connIndex, code: closed.code, reason: closed.reason }, 'Connection terminated');
      } catch (err) {
        slot.registered = false;
        slot.conn?.close(TunnelCloseCode.NO_ERROR, 'registration failed');
        if (signal.aborted) break;
        this.emit('failed', connIndex, err);
        if (isOxyError(err, 'OXY_ERR_TUNNEL_UNAUTHORIZED') || isOxyError(err, 'OXY_ERR_TUNNEL_PIN_MISMATCH')) {
          this.o.log.error({ connIndex, err }, 'Register tunnel error from server side');
          this.emit('fatal', err as OxyError);
          this.#stop.abort();
          break;
        }
        this.o.log.error({ connIndex, err, ip: slot.conn?.remoteAddress }, 'Unable to establish connection with the edge');
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
    for (const [connIndex, s] of this.#slots.entries()) {
      if (s.conn && !s.conn.isClosed) {
        s.conn.close(TunnelCloseCode.SHUTDOWN, 'connector shutting down');
        this.o.log.info({ connIndex, connection: s.connectionId }, 'Unregistered tunnel connection');
      }
    }
    await Promise.all(this.#loops);
  }
}
