/**
 * Stream headers: the versioned frame that begins every tunnel stream (a request header,
 * written by the opener) and, for request/response kinds, the answer (a response header,
 * written by the acceptor before any payload). Wire format in ./WIRE.md.
 *
 * Parsing is an explicit state machine over a chunk queue: PREFIX (8 bytes: magic,
 * version, type, body length) → the length is checked against the limit before a single
 * body byte is awaited → BODY → DONE. Bytes after the frame are payload and are handed
 * back untouched.
 */
import type { Duplex, Readable } from 'node:stream';
import { OxyError } from '../../core/errors.js';
import { ChunkQueue } from './chunks.js';

export const HEADER_MAGIC = 0x4f58; // "OX"
export const PROTOCOL_VERSION = 1;
export const HEADER_PREFIX_SIZE = 8;
/** Default cap on a header body (destination + metadata). */
export const DEFAULT_MAX_HEADER_SIZE = 64 * 1024;

export const FrameType = { REQUEST: 0x01, RESPONSE: 0x02 } as const;

/** `forward`: only on a peer link between edges; its destination is the tunnel ID (edge/forwarding.ts). */
export type StreamKind = 'http' | 'websocket' | 'tcp' | 'ip-packets' | 'udp' | 'control' | 'forward' | 'http1' | 'tcp-flows';
const KIND_TO_BYTE: Record<StreamKind, number> = {
  http: 1,
  websocket: 2,
  tcp: 3,
  'ip-packets': 4,
  udp: 5,
  control: 6,
  forward: 7,
  /** A keep-alive HTTP/1.1 client connection, its requests framed in band (protocol/http1.ts); only to connectors announcing HTTP1_STREAM_FEATURE. */
  http1: 8,
  /** Private TCP flows one after another, framed in band (protocol/tcp-flows.ts); only to connectors announcing TCP_FLOWS_FEATURE. */
  'tcp-flows': 9,
};
const BYTE_TO_KIND = new Map<number, StreamKind>(Object.entries(KIND_TO_BYTE).map(([k, v]) => [v, k as StreamKind]));

/**
 * Ordered key/value pairs; keys may repeat (several `HttpHeader:Set-Cookie`). Conventional
 * keys, as cloudflared names them: `HttpMethod`, `HttpHost`, `HttpHeader:<Name>`,
 * `HttpStatus`; plus `FlowId` for udp/ip-packets streams.
 */
export type MetadataEntry = readonly [key: string, value: string];
export type Metadata = readonly MetadataEntry[];

export interface StreamRequestHeader {
  type: 'request';
  kind: StreamKind;
  /** `host:port` for tcp/udp, a URL for http/websocket, '' for control and ip-packets. */
  destination: string;
  metadata: Metadata;
}

/** Status of a response header. 0 is success; the rest say why the acceptor refused. */
export const ResponseStatus = {
  OK: 0,
  /** The destination could not be reached (connect refused, DNS, timeout). */
  DIAL_FAILED: 1,
  /** Policy (ingress rules, routes, hooks) refused the destination. */
  FORBIDDEN: 2,
  /** The request header was unusable (unknown kind for this acceptor, bad destination). */
  BAD_REQUEST: 3,
  INTERNAL: 4,
} as const;

export interface StreamResponseHeader {
  type: 'response';
  status: number;
  /** Human text for a non-zero status; '' on success. */
  message: string;
  metadata: Metadata;
}

export type StreamHeader = StreamRequestHeader | StreamResponseHeader;

export function metaGet(metadata: Metadata, key: string): string | undefined {
  for (const [k, v] of metadata) if (k === key) return v;
  return undefined;
}

export function metaGetAll(metadata: Metadata, key: string): string[] {
  const out: string[] = [];
  for (const [k, v] of metadata) if (k === key) out.push(v);
  return out;
}

// ---------------------------------------------------------------------------- encode

export function encodeRequestHeader(header: Omit<StreamRequestHeader, 'type'> | StreamRequestHeader, maxSize = DEFAULT_MAX_HEADER_SIZE): Buffer {
  const kind = KIND_TO_BYTE[header.kind];
  if (kind === undefined) throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', `Unknown stream kind: ${String(header.kind)}`);
  const destLen = Buffer.byteLength(header.destination, 'utf8');
  checkU16(destLen, 'destination');
  const bodyLen = 1 + 2 + destLen + metadataSize(header.metadata);
  const out = allocFrame(FrameType.REQUEST, bodyLen, maxSize);
  let off = HEADER_PREFIX_SIZE;
  out[off++] = kind;
  off = out.writeUInt16BE(destLen, off);
  off += out.write(header.destination, off, 'utf8');
  writeMetadata(out, off, header.metadata);
  return out;
}

export function encodeResponseHeader(header: Omit<StreamResponseHeader, 'type'> | StreamResponseHeader, maxSize = DEFAULT_MAX_HEADER_SIZE): Buffer {
  if (!Number.isInteger(header.status) || header.status < 0 || header.status > 0xffff) {
    throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', `Response status out of range: ${header.status}`);
  }
  const msgLen = Buffer.byteLength(header.message, 'utf8');
  checkU16(msgLen, 'message');
  const bodyLen = 2 + 2 + msgLen + metadataSize(header.metadata);
  const out = allocFrame(FrameType.RESPONSE, bodyLen, maxSize);
  let off = out.writeUInt16BE(header.status, HEADER_PREFIX_SIZE);
  off = out.writeUInt16BE(msgLen, off);
  off += out.write(header.message, off, 'utf8');
  writeMetadata(out, off, header.metadata);
  return out;
}

function allocFrame(type: number, bodyLen: number, maxSize: number): Buffer {
  if (bodyLen > maxSize) {
    throw new OxyError('OXY_ERR_PROTOCOL_OVERSIZE', `Stream header of ${bodyLen} bytes exceeds the limit of ${maxSize}`);
  }
  const out = Buffer.allocUnsafe(HEADER_PREFIX_SIZE + bodyLen);
  out.writeUInt16BE(HEADER_MAGIC, 0);
  out[2] = PROTOCOL_VERSION;
  out[3] = type;
  out.writeUInt32BE(bodyLen, 4);
  return out;
}

// Encoding sizes every string first and writes it straight into the one frame buffer: a
// Buffer per key and value cost more than the rest of the encoding on the per-request path.
function metadataSize(metadata: Metadata): number {
  checkU16(metadata.length, 'metadata count');
  let size = 2;
  for (const [key, value] of metadata) {
    if (key.length === 0) throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', 'Empty metadata key');
    const k = Buffer.byteLength(key, 'utf8');
    checkU16(k, 'metadata key');
    size += 2 + k + 4 + Buffer.byteLength(value, 'utf8');
  }
  return size;
}

function writeMetadata(out: Buffer, off: number, metadata: Metadata): number {
  off = out.writeUInt16BE(metadata.length, off);
  for (const [key, value] of metadata) {
    const k = out.write(key, off + 2, 'utf8');
    off = out.writeUInt16BE(k, off) + k;
    const v = out.write(value, off + 4, 'utf8');
    off = out.writeUInt32BE(v, off) + v;
  }
  return off;
}

function checkU16(n: number, what: string): void {
  if (n > 0xffff) throw new OxyError('OXY_ERR_PROTOCOL_OVERSIZE', `Stream header ${what} too long (${n})`);
}

// ---------------------------------------------------------------------------- parse

const enum State {
  PREFIX,
  BODY,
  DONE,
  FAILED,
}

export interface StreamHeaderParserOptions {
  /** Largest body accepted. Default 64 KiB. */
  maxSize?: number;
  /** Accept only this frame type; anything else is UNEXPECTED. */
  expect?: StreamHeader['type'];
}

/**
 * Incremental parser of one stream header. Feed chunks with `push()`; it returns the header
 * once complete (then `rest()` gives the payload bytes that followed), or null while more
 * bytes are needed. Throws an OxyError with an OXY_ERR_PROTOCOL_* code on bad input; after a throw
 * the parser stays failed.
 */
export class StreamHeaderParser {
  private readonly queue = new ChunkQueue();
  private state = State.PREFIX;
  private type = 0;
  private bodyLength = 0;
  private readonly maxSize: number;
  private readonly expect: StreamHeader['type'] | undefined;

  constructor(options: StreamHeaderParserOptions = {}) {
    this.maxSize = options.maxSize ?? DEFAULT_MAX_HEADER_SIZE;
    this.expect = options.expect;
  }

  get done(): boolean {
    return this.state === State.DONE;
  }

  push(chunk: Buffer): StreamHeader | null {
    if (this.state === State.DONE) throw new Error('StreamHeaderParser: push() after the header was complete');
    if (this.state === State.FAILED) throw new Error('StreamHeaderParser: push() after a failure');
    this.queue.push(chunk);
    try {
      return this.step();
    } catch (err) {
      this.state = State.FAILED;
      throw err;
    }
  }

  /** Payload bytes received after the header. Valid once `push()` returned a header. */
  rest(): Buffer[] {
    return this.queue.drain();
  }

  /** Call when the stream ended: throws TRUNCATED if a header was begun or expected. */
  end(): never {
    this.state = State.FAILED;
    throw new OxyError('OXY_ERR_PROTOCOL_TRUNCATED', `Stream ended inside the stream header (${this.queue.length} bytes received)`);
  }

  private step(): StreamHeader | null {
    if (this.state === State.PREFIX) {
      // Check the magic as soon as 2 bytes are in, so garbage fails fast.
      if (this.queue.length < HEADER_PREFIX_SIZE) {
        if (this.queue.length >= 2) this.peekMagic();
        return null;
      }
      const prefix = this.queue.consume(HEADER_PREFIX_SIZE);
      this.type = checkPrefix(prefix, this.expect, this.maxSize);
      this.bodyLength = prefix.readUInt32BE(4);
      this.state = State.BODY;
    }
    if (this.state === State.BODY) {
      if (this.queue.length < this.bodyLength) return null;
      const body = this.queue.consume(this.bodyLength);
      const header = this.type === FrameType.REQUEST ? decodeRequestBody(body) : decodeResponseBody(body);
      this.state = State.DONE;
      return header;
    }
    return null;
  }

  private peekMagic(): void {
    const magic = this.queue.peek(2).readUInt16BE(0);
    if (magic !== HEADER_MAGIC) throw badMagic(magic);
  }
}

/** The frame type of an 8-byte prefix (`buf`'s first bytes), checked as the parser checks it. */
function checkPrefix(buf: Buffer, expect: StreamHeader['type'] | undefined, maxSize: number): number {
  const magic = buf.readUInt16BE(0);
  if (magic !== HEADER_MAGIC) throw badMagic(magic);
  const version = buf[2]!;
  if (version !== PROTOCOL_VERSION) {
    throw new OxyError('OXY_ERR_PROTOCOL_UNSUPPORTED_VERSION', `Unsupported stream header version ${version}`);
  }
  const type = buf[3]!;
  if (type !== FrameType.REQUEST && type !== FrameType.RESPONSE) {
    throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', `Unknown stream header type 0x${type.toString(16)}`);
  }
  const got = type === FrameType.REQUEST ? 'request' : 'response';
  if (expect !== undefined && got !== expect) {
    throw new OxyError('OXY_ERR_PROTOCOL_UNEXPECTED_MESSAGE', `Expected a ${expect} header, got a ${got} header`);
  }
  const bodyLength = buf.readUInt32BE(4);
  if (bodyLength > maxSize) {
    throw new OxyError('OXY_ERR_PROTOCOL_OVERSIZE', `Stream header of ${bodyLength} bytes exceeds the limit of ${maxSize}`);
  }
  return type;
}

/**
 * A buffer that holds one whole stream header: the header, or null when the buffer holds less
 * or more than one (the tcp-flows records: no parser and chunk queue per flow). Errors as
 * StreamHeaderParser's.
 */
export function decodeWholeHeader(buf: Buffer, expect: StreamHeader['type'], maxSize: number): StreamHeader | null {
  if (buf.length < HEADER_PREFIX_SIZE) {
    if (buf.length >= 2 && buf.readUInt16BE(0) !== HEADER_MAGIC) throw badMagic(buf.readUInt16BE(0));
    return null;
  }
  const type = checkPrefix(buf, expect, maxSize);
  if (buf.length !== HEADER_PREFIX_SIZE + buf.readUInt32BE(4)) return null;
  const body = buf.subarray(HEADER_PREFIX_SIZE);
  return type === FrameType.REQUEST ? decodeRequestBody(body) : decodeResponseBody(body);
}

function badMagic(magic: number): OxyError {
  return new OxyError('OXY_ERR_PROTOCOL_BAD_MAGIC', `Not an oxy stream header (magic 0x${magic.toString(16).padStart(4, '0')})`);
}

/** A bounds-checked reader over one header body. */
class BodyReader {
  private off = 0;
  constructor(private readonly buf: Buffer) {}

  u8(): number {
    this.need(1);
    return this.buf[this.off++]!;
  }
  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16BE(this.off);
    this.off += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.off);
    this.off += 4;
    return v;
  }
  utf8(len: number, what: string): string {
    this.need(len);
    const start = this.off;
    this.off += len;
    // Header names and values are nearly always ASCII: no validating decoder needed.
    if (isAsciiRange(this.buf, start, this.off)) return this.buf.toString('latin1', start, this.off);
    const bytes = this.buf.subarray(start, this.off);
    try {
      return decoder.decode(bytes);
    } catch {
      throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', `Invalid UTF-8 in ${what}`);
    }
  }
  finish(): void {
    if (this.off !== this.buf.length) {
      throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', `${this.buf.length - this.off} trailing bytes in stream header`);
    }
  }
  private need(n: number): void {
    if (this.off + n > this.buf.length) {
      throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', 'Stream header field runs past the declared length');
    }
  }
}

const decoder = new TextDecoder('utf-8', { fatal: true });

function isAsciiRange(buf: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (buf[i]! > 0x7f) return false;
  return true;
}

function decodeRequestBody(body: Buffer): StreamRequestHeader {
  const r = new BodyReader(body);
  const kindByte = r.u8();
  const kind = BYTE_TO_KIND.get(kindByte);
  if (kind === undefined) throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', `Unknown stream kind ${kindByte}`);
  const destination = r.utf8(r.u16(), 'destination');
  const metadata = decodeMetadata(r);
  r.finish();
  return { type: 'request', kind, destination, metadata };
}

function decodeResponseBody(body: Buffer): StreamResponseHeader {
  const r = new BodyReader(body);
  const status = r.u16();
  const message = r.utf8(r.u16(), 'message');
  const metadata = decodeMetadata(r);
  r.finish();
  return { type: 'response', status, message, metadata };
}

function decodeMetadata(r: BodyReader): MetadataEntry[] {
  const count = r.u16();
  const out: MetadataEntry[] = [];
  for (let i = 0; i < count; i++) {
    const key = r.utf8(r.u16(), 'metadata key');
    if (key.length === 0) throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', 'Empty metadata key');
    const value = r.utf8(r.u32(), 'metadata value');
    out.push([key, value]);
  }
  return out;
}

// ---------------------------------------------------------------------------- streams

export interface ReadHeaderOptions extends StreamHeaderParserOptions {
  /** Fail with TIMEOUT when the header is not complete in time. Default: no timeout. */
  timeoutMs?: number;
  /** The timeout starts when this settles (a request's upload: a long body is not a late answer), not at once. */
  timeoutAfter?: Promise<unknown>;
  signal?: AbortSignal;
}

/**
 * Read one stream header from a readable, leaving the stream positioned at the payload:
 * bytes that arrived after the header are `unshift`ed back. Rejects with the parser's
 * OxyError (the stream is left as is; the caller decides to reset it), TRUNCATED if the
 * stream ends first, or the stream's own error.
 */
export function readStreamHeader(stream: Readable, options: ReadHeaderOptions & { expect: 'request' }): Promise<StreamRequestHeader>;
export function readStreamHeader(stream: Readable, options: ReadHeaderOptions & { expect: 'response' }): Promise<StreamResponseHeader>;
export function readStreamHeader(stream: Readable, options?: ReadHeaderOptions): Promise<StreamHeader>;
export function readStreamHeader(stream: Readable, options: ReadHeaderOptions = {}): Promise<StreamHeader> {
  const parser = new StreamHeaderParser(options);
  return new Promise<StreamHeader>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    let done = false;
    const cleanup = (): void => {
      done = true;
      stream.off('readable', onReadable);
      stream.off('end', onEnd);
      stream.off('error', onError);
      stream.off('close', onClose);
      options.signal?.removeEventListener('abort', onAbort);
      if (timer) clearTimeout(timer);
    };
    const fail = (err: unknown): void => {
      cleanup();
      reject(err);
    };
    const onReadable = (): void => {
      let chunk: Buffer | null;
      while ((chunk = stream.read() as Buffer | null) !== null) {
        let header: StreamHeader | null;
        try {
          header = parser.push(chunk);
        } catch (err) {
          fail(err);
          return;
        }
        if (header) {
          cleanup();
          const rest = parser.rest();
          for (let i = rest.length - 1; i >= 0; i--) stream.unshift(rest[i]);
          resolve(header);
          return;
        }
      }
    };
    const onEnd = (): void => {
      try {
        parser.end();
      } catch (err) {
        fail(err);
      }
    };
    const onError = (err: Error): void => fail(err);
    const onClose = (): void => fail(new OxyError('OXY_ERR_PROTOCOL_TRUNCATED', 'Stream closed before its header was complete'));
    const onAbort = (): void => fail(new OxyError('OXY_ERR_ABORTED', 'Reading the stream header was aborted'));
    if (options.signal?.aborted) {
      onAbort();
      return;
    }
    stream.on('readable', onReadable);
    stream.on('end', onEnd);
    stream.on('error', onError);
    stream.on('close', onClose);
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const { timeoutMs, timeoutAfter } = options;
    if (timeoutMs !== undefined) {
      const arm = (): void => {
        if (!done) timer = setTimeout(() => fail(new OxyError('OXY_ERR_PROTOCOL_TIMEOUT', `No stream header within ${timeoutMs} ms`)), timeoutMs);
      };
      if (timeoutAfter) timeoutAfter.then(arm, arm);
      else arm();
    }
  });
}

/** Write a request header on a freshly opened stream. */
export function writeRequestHeader(stream: Duplex, header: Omit<StreamRequestHeader, 'type'>): boolean {
  return stream.write(encodeRequestHeader(header));
}

/** Write a response header on an accepted stream, before any payload. */
export function writeResponseHeader(stream: Duplex, header: Omit<StreamResponseHeader, 'type'>): boolean {
  return stream.write(encodeResponseHeader(header));
}
