/**
 * The control stream: the first stream of every tunnel connection (opened by the edge,
 * request header kind `control`), carrying length-prefixed JSON messages in both
 * directions: `[u32 BE length][UTF-8 JSON object]`, each at most 64 KiB. See ./WIRE.md for
 * the message sequence.
 */
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { OxyError, isErrorCode } from '../../core/errors.js';
import { ChunkQueue } from './chunks.js';

export const CONTROL_VERSION = 1;
export const DEFAULT_MAX_CONTROL_MESSAGE = 64 * 1024;

/** edge → connector, first message: the challenge the connector proves its secret against. */
export interface HelloMessage {
  type: 'hello';
  version: number;
  /** base64 of 32 random bytes. */
  nonce: string;
  /** Edge location name (e.g. `lhr01`). */
  location: string;
}

/** connector → edge: who it is and the proof it holds the tunnel secret. */
export interface RegisterMessage {
  type: 'register';
  version: number;
  tunnelId: string;
  connectorId: string;
  connIndex: number;
  clientVersion: string;
  features: string[];
  /** base64 HMAC-SHA256(secret, transcript): see registration.ts. */
  proof: string;
}

/** edge → connector: registration accepted. */
export interface RegisteredMessage {
  type: 'registered';
  connectionId: string;
  location: string;
}

/** Either side: a failure with a stable code. After an `error` the sender closes. */
export interface ErrorMessage {
  type: 'error';
  code: string;
  message: string;
  /** Whether the receiver may retry (e.g. with another edge or later). */
  retryable: boolean;
}

/**
 * Either side: "I am going away". The receiver stops opening streams toward the sender;
 * streams in flight continue until they end or the sender closes the connection.
 * (cloudflared's UnregisterConnection is the connector's drain.)
 */
export interface DrainMessage {
  type: 'drain';
  reason: string;
}

/**
 * edge → connector, after `registered` and whenever they change: the private networks this
 * tunnel serves in each vnet. The connector off-ramps only to destinations inside them.
 */
export interface RoutesMessage {
  type: 'routes';
  routes: { vnetId: string; network: string }[];
}

export type ControlMessage = HelloMessage | RegisterMessage | RegisteredMessage | ErrorMessage | DrainMessage | RoutesMessage;
export type ControlMessageType = ControlMessage['type'];

// ---------------------------------------------------------------------------- codec

export function encodeControlMessage(message: ControlMessage, maxSize = DEFAULT_MAX_CONTROL_MESSAGE): Buffer {
  validateControlMessage(message);
  const json = Buffer.from(JSON.stringify(message), 'utf8');
  if (json.length > maxSize) {
    throw new OxyError('OXY_ERR_PROTOCOL_OVERSIZE', `Control message of ${json.length} bytes exceeds ${maxSize}`);
  }
  const out = Buffer.allocUnsafe(4 + json.length);
  out.writeUInt32BE(json.length, 0);
  json.copy(out, 4);
  return out;
}

const enum State {
  LENGTH,
  BODY,
  FAILED,
}

/** Incremental parser: `push(chunk)` returns the messages completed by that chunk. */
export class ControlFrameParser {
  private readonly queue = new ChunkQueue();
  private state = State.LENGTH;
  private bodyLength = 0;

  constructor(private readonly maxSize = DEFAULT_MAX_CONTROL_MESSAGE) {}

  /** True when a message is partially received (an end now would truncate it). */
  get midFrame(): boolean {
    return this.state === State.BODY || this.queue.length > 0;
  }

  push(chunk: Buffer): ControlMessage[] {
    if (this.state === State.FAILED) throw new Error('ControlFrameParser: push() after a failure');
    this.queue.push(chunk);
    const out: ControlMessage[] = [];
    try {
      for (;;) {
        if (this.state === State.LENGTH) {
          if (this.queue.length < 4) break;
          this.bodyLength = this.queue.readUInt(4);
          if (this.bodyLength > this.maxSize) {
            throw new OxyError('OXY_ERR_PROTOCOL_OVERSIZE', `Control message of ${this.bodyLength} bytes exceeds the limit of ${this.maxSize}`);
          }
          this.state = State.BODY;
        }
        if (this.queue.length < this.bodyLength) break;
        out.push(decodeControlBody(this.queue.consume(this.bodyLength)));
        this.state = State.LENGTH;
      }
    } catch (err) {
      this.state = State.FAILED;
      throw err;
    }
    return out;
  }
}

const decoder = new TextDecoder('utf-8', { fatal: true });

function decodeControlBody(body: Buffer): ControlMessage {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(body));
  } catch (err) {
    throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', 'Control message is not UTF-8 JSON', { cause: err });
  }
  validateControlMessage(value);
  return value;
}

type Check = (v: unknown) => boolean;
const str: Check = (v) => typeof v === 'string';
const int: Check = (v) => Number.isSafeInteger(v) && (v as number) >= 0;
const bool: Check = (v) => typeof v === 'boolean';
const strList: Check = (v) => Array.isArray(v) && v.every((x) => typeof x === 'string');
const routeList: Check = (v) =>
  Array.isArray(v) && v.every((r) => typeof r === 'object' && r !== null && typeof r.vnetId === 'string' && typeof r.network === 'string');

const SHAPES: Record<ControlMessageType, Record<string, Check>> = {
  hello: { version: int, nonce: str, location: str },
  register: {
    version: int,
    tunnelId: str,
    connectorId: str,
    connIndex: int,
    clientVersion: str,
    features: strList,
    proof: str,
  },
  registered: { connectionId: str, location: str },
  error: { code: str, message: str, retryable: bool },
  drain: { reason: str },
  routes: { routes: routeList },
};

/** Throws MALFORMED unless `value` is a control message of a known type with every field typed. */
export function validateControlMessage(value: unknown): asserts value is ControlMessage {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', 'Control message is not a JSON object');
  }
  const record = value as Record<string, unknown>;
  const type = record.type;
  const shape = typeof type === 'string' && Object.hasOwn(SHAPES, type) ? SHAPES[type as ControlMessageType] : undefined;
  if (!shape) throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', `Unknown control message type: ${String(type)}`);
  for (const [field, check] of Object.entries(shape)) {
    if (!check(record[field])) {
      throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', `Control message '${type}' has a bad or missing '${field}'`);
    }
  }
}

// ---------------------------------------------------------------------------- channel

export interface ControlChannelEvents {
  message: [ControlMessage];
  /** The peer announced a drain. */
  drain: [reason: string];
  /** The control stream ended or failed; `err` is undefined on a clean end. */
  close: [err: Error | undefined];
}

/**
 * Messages over one control stream. `next()` awaits a message (queued if none is waiting);
 * `drain` messages also set `peerDraining` and emit 'drain'. A framing error resets the
 * stream and ends the channel with that error.
 */
export class ControlChannel extends EventEmitter<ControlChannelEvents> {
  readonly stream: Duplex;
  /** The peer said it is going away: open no new streams toward it. */
  peerDraining = false;
  peerDrainReason: string | undefined;
  /** We announced our own drain. */
  localDraining = false;
  /**
   * The last `routes` message: it can arrive in the same read as `registered`, before the
   * receiver had a chance to listen for it, so it is kept for late listeners.
   */
  latestRoutes: RoutesMessage | undefined;

  private readonly parser: ControlFrameParser;
  private readonly backlog: ControlMessage[] = [];
  private readonly waiters: Array<{ resolve: (m: ControlMessage) => void; reject: (e: Error) => void }> = [];
  private closedWith: Error | null | undefined; // undefined: open; null: clean end; Error: failed

  constructor(stream: Duplex, options: { maxMessageSize?: number } = {}) {
    super();
    this.stream = stream;
    this.parser = new ControlFrameParser(options.maxMessageSize);
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('end', () => this.finish(this.parser.midFrame ? new OxyError('OXY_ERR_PROTOCOL_TRUNCATED', 'Control stream ended inside a message') : null));
    stream.on('error', (err) => this.finish(err));
    stream.on('close', () => this.finish(new OxyError('OXY_ERR_TUNNEL_CLOSED', 'Control stream closed')));
  }

  get isOpen(): boolean {
    return this.closedWith === undefined;
  }

  send(message: ControlMessage): Promise<void> {
    const frame = encodeControlMessage(message);
    return new Promise((resolve, reject) => {
      if (this.stream.destroyed || this.stream.writableEnded) {
        reject(new OxyError('OXY_ERR_TUNNEL_CLOSED', 'Control stream is closed'));
        return;
      }
      this.stream.write(frame, (err) => (err ? reject(err) : resolve()));
    });
  }

  /** Announce our drain to the peer. */
  async drain(reason: string): Promise<void> {
    this.localDraining = true;
    await this.send({ type: 'drain', reason });
  }

  /** The next message, waiting up to `timeoutMs`. Rejects when the channel closes first. */
  next(timeoutMs?: number): Promise<ControlMessage> {
    const queued = this.backlog.shift();
    if (queued) return Promise.resolve(queued);
    if (this.closedWith !== undefined) {
      return Promise.reject(this.closedWith ?? new OxyError('OXY_ERR_TUNNEL_CLOSED', 'Control stream ended'));
    }
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const waiter = {
        resolve: (m: ControlMessage) => {
          if (timer) clearTimeout(timer);
          resolve(m);
        },
        reject: (e: Error) => {
          if (timer) clearTimeout(timer);
          reject(e);
        },
      };
      this.waiters.push(waiter);
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          const i = this.waiters.indexOf(waiter);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(new OxyError('OXY_ERR_PROTOCOL_TIMEOUT', `No control message within ${timeoutMs} ms`));
        }, timeoutMs);
      }
    });
  }

  /** The next message, which must be of `type` (an `error` message rejects with its code). */
  async expect<T extends ControlMessageType>(type: T, timeoutMs?: number): Promise<Extract<ControlMessage, { type: T }>> {
    const message = await this.next(timeoutMs);
    if (message.type === type) return message as Extract<ControlMessage, { type: T }>;
    if (message.type === 'error') throw peerError(message);
    throw new OxyError('OXY_ERR_PROTOCOL_UNEXPECTED_MESSAGE', `Expected control message '${type}', got '${message.type}'`);
  }

  /** End our side of the control stream. */
  end(): void {
    if (!this.stream.writableEnded) this.stream.end();
  }

  private onData(chunk: Buffer): void {
    let messages: ControlMessage[];
    try {
      messages = this.parser.push(chunk);
    } catch (err) {
      this.finish(err as Error);
      this.stream.destroy(err as Error);
      return;
    }
    for (const message of messages) {
      if (message.type === 'drain') {
        this.peerDraining = true;
        this.peerDrainReason = message.reason;
        this.emit('drain', message.reason);
      }
      if (message.type === 'routes') this.latestRoutes = message;
      this.emit('message', message);
      const waiter = this.waiters.shift();
      if (waiter) waiter.resolve(message);
      // drain and routes are events (see 'drain' / 'message'), not answers anyone awaits.
      else if (message.type !== 'drain' && message.type !== 'routes') this.backlog.push(message);
    }
  }

  private finish(err: Error | null): void {
    if (this.closedWith !== undefined) return;
    this.closedWith = err;
    const reason = err ?? new OxyError('OXY_ERR_TUNNEL_CLOSED', 'Control stream ended');
    for (const waiter of this.waiters.splice(0)) waiter.reject(reason);
    this.emit('close', err ?? undefined);
  }
}

/** The peer's `error` message as an OxyError; a code this build does not know stays in the message. */
function peerError(message: ErrorMessage): OxyError {
  if (isErrorCode(message.code)) return new OxyError(message.code, message.message);
  return new OxyError('OXY_ERR_INTERNAL', `${message.message} (peer error ${message.code})`);
}
