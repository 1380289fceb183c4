/**
 * The `http1` stream kind (WIRE.md §7): one tunnel stream per keep-alive HTTP/1.1 client
 * connection, its requests framed in band so the connector can pick each one's ingress rule
 * without parsing HTTP, and its responses as raw HTTP/1.1 bytes.
 *
 *   edge → connector  records [u8 type][u32 length][payload]:
 *                     HEAD  u32 body length | u16 len + host | u16 len + path | u8 len + method | request head bytes
 *                     BODY  body bytes (Content-Length bodies only; they follow their HEAD)
 *   connector → edge  raw HTTP/1.1 responses, one per HEAD, in order; the end of the stream
 *                     ends a response that is delimited by the close of its connection.
 *
 * The edge sends a HEAD only once the previous response ended, so the connector may switch
 * the origin socket between requests without tracking response ends. Here: the codec, the
 * minimal request scan of the public listener (what routing and framing need, nothing else;
 * anything unusual is left to Node's full HTTP server) and the response reader that finds
 * where each response ends.
 */
import { OxyError } from '../../core/errors.js';

/** The registration feature a connector announces when it serves `http1` streams. */
export const HTTP1_STREAM_FEATURE = 'http1-stream/1';

export const Http1Record = { HEAD: 1, BODY: 2 } as const;

/** Heads larger than this go to the full HTTP server (Node's own limit is 16 KiB). */
export const MAX_FAST_HEAD = 16 * 1024;

const CRLF2 = Buffer.from('\r\n\r\n', 'latin1');

export interface FastRequest {
  method: string;
  /** The Host header (routing). */
  host: string;
  /** Origin-form target. */
  path: string;
  /** Content-Length, 0 without a body. */
  bodyLength: number;
  /** The client asked to close after this request. */
  close: boolean;
  /** The head as the origin gets it: hop-by-hop headers dropped, X-Forwarded-For/-Proto set. */
  head: string;
  /** Bytes of the client's buffer the head took. */
  size: number;
}

const FAST_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH']);
/** Dropped from the forwarded head, as the per-request path drops them (HOP_BY_HOP, X-Forwarded-Proto). */
const DROPPED = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'proxy-authorization', 'proxy-authenticate', 'x-forwarded-proto']);
/** Headers whose presence needs the full server (upgrades, 100-continue, chunked uploads). */
const SLOW = new Set(['transfer-encoding', 'upgrade', 'expect', 'http2-settings']);
const REQUEST_LINE = /^([A-Z]+) (\/[\x21-\x7e]*) HTTP\/1\.1$/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Bytes a plain head never has (controls, obs-text, lone CR/LF are checked per line). */
const ODD = /[^\t\x20-\x7e\r\n]/;

/**
 * A request at the start of `buf` that the fast path can carry, or undefined: an incomplete
 * head, or anything beyond a plain origin-form HTTP/1.1 request with one Host and at most a
 * Content-Length body (absolute targets, upgrades, Expect, chunked uploads, HTTP/1.0, odd
 * bytes, a second Host or Content-Length) — Node's server then takes the connection, with
 * its limits and error answers.
 */
export function scanRequest(buf: Buffer, client: string): FastRequest | undefined {
  const end = buf.indexOf(CRLF2);
  if (end < 0 || end + 4 > MAX_FAST_HEAD) return undefined;
  const text = buf.toString('latin1', 0, end);
  if (ODD.test(text)) return undefined;
  const lines = text.split('\r\n');
  const first = REQUEST_LINE.exec(lines[0]);
  if (!first || !FAST_METHODS.has(first[1])) return undefined;
  let host: string | undefined;
  let length: string | undefined;
  let xff: string | undefined;
  let close = false;
  let head = `${lines[0]}\r\n`;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const colon = line.indexOf(':');
    if (colon <= 0 || line.includes('\r') || line.includes('\n')) return undefined;
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) return undefined;
    const key = name.toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (SLOW.has(key)) return undefined;
    if (key === 'host') {
      if (host !== undefined) return undefined;
      host = value;
    } else if (key === 'content-length') {
      if (length !== undefined || !/^\d{1,15}$/.test(value)) return undefined;
      length = value;
    } else if (key === 'x-forwarded-for') {
      xff = xff === undefined ? value : `${xff}, ${value}`;
      continue;
    } else if (key === 'connection') {
      const tokens = value.toLowerCase();
      if (tokens.includes('upgrade')) return undefined;
      if (/(^|,)\s*close\s*(,|$)/.test(tokens)) close = true;
    }
    if (!DROPPED.has(key)) head += `${line}\r\n`;
  }
  if (host === undefined) return undefined;
  head += `X-Forwarded-For: ${xff ? `${xff}, ${client}` : client}\r\nX-Forwarded-Proto: http\r\n\r\n`;
  return { method: first[1], host, path: first[2], bodyLength: length === undefined ? 0 : Number(length), close, head, size: end + 4 };
}

/** A HEAD record for `req` (one buffer: header and payload). */
export function encodeHeadRecord(req: Pick<FastRequest, 'method' | 'host' | 'path' | 'bodyLength' | 'head'>): Buffer {
  const host = Buffer.byteLength(req.host);
  const path = Buffer.byteLength(req.path);
  const method = Buffer.byteLength(req.method);
  if (host > 0xffff || path > 0xffff || method > 0xff) throw new OxyError('OXY_ERR_PROTOCOL_OVERSIZE', 'request head field too long for an http1 record');
  const len = 4 + 2 + host + 2 + path + 1 + method + Buffer.byteLength(req.head, 'latin1');
  const out = Buffer.allocUnsafe(5 + len);
  out[0] = Http1Record.HEAD;
  out.writeUInt32BE(len, 1);
  out.writeUInt32BE(req.bodyLength, 5);
  let off = out.writeUInt16BE(host, 9);
  off += out.write(req.host, off);
  off = out.writeUInt16BE(path, off);
  off += out.write(req.path, off);
  out[off++] = method;
  off += out.write(req.method, off, 'latin1');
  out.write(req.head, off, 'latin1');
  return out;
}

/** The 5-byte header of a BODY record of `length` bytes. */
export function bodyRecordHeader(length: number): Buffer {
  const out = Buffer.allocUnsafe(5);
  out[0] = Http1Record.BODY;
  out.writeUInt32BE(length, 1);
  return out;
}

export interface HeadRecord {
  bodyLength: number;
  host: string;
  path: string;
  method: string;
  /** The request head bytes as the origin gets them. */
  head: Buffer;
}

/** Largest record accepted (a HEAD is at most MAX_FAST_HEAD plus its fields; BODY records are the edge's reads). */
const MAX_RECORD = 1024 * 1024;

/**
 * Reads records off the connector's side of an http1 stream: `push` chunks, get each record
 * whole (a view into the chunk when it holds the record, no copy).
 */
export class Http1RecordReader {
  #pending: Buffer | undefined;

  constructor(
    private readonly onHead: (head: HeadRecord) => void,
    private readonly onBody: (bytes: Buffer) => void,
  ) {}

  push(chunk: Buffer): void {
    const buf = this.#pending ? Buffer.concat([this.#pending, chunk]) : chunk;
    this.#pending = undefined;
    let off = 0;
    while (buf.length - off >= 5) {
      const type = buf[off];
      const len = buf.readUInt32BE(off + 1);
      if (len > MAX_RECORD) throw new OxyError('OXY_ERR_PROTOCOL_OVERSIZE', `http1 record of ${len} bytes`);
      if (buf.length - off - 5 < len) break;
      const payload = buf.subarray(off + 5, off + 5 + len);
      off += 5 + len;
      if (type === Http1Record.BODY) this.onBody(payload);
      else if (type === Http1Record.HEAD) this.onHead(decodeHead(payload));
      else throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', `Unknown http1 record type ${type}`);
    }
    if (off < buf.length) this.#pending = off === 0 ? buf : buf.subarray(off);
  }
}

function decodeHead(p: Buffer): HeadRecord {
  try {
    const bodyLength = p.readUInt32BE(0);
    let off = 4;
    const hostLen = p.readUInt16BE(off);
    const host = p.toString('utf8', off + 2, (off += 2 + hostLen));
    const pathLen = p.readUInt16BE(off);
    const path = p.toString('utf8', off + 2, (off += 2 + pathLen));
    const methodLen = p[off];
    const method = p.toString('latin1', off + 1, (off += 1 + methodLen));
    if (off > p.length) throw new RangeError('past the end');
    return { bodyLength, host, path, method, head: p.subarray(off) };
  } catch (err) {
    throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', 'http1 HEAD record is truncated', { cause: err });
  }
}

/** Header pairs of a raw request head (for the connector's per-request fallback through undici). */
export function headPairs(head: Buffer): [string, string][] {
  const lines = head.toString('latin1').split('\r\n');
  const out: [string, string][] = [];
  for (let i = 1; i < lines.length; i++) {
    const colon = lines[i].indexOf(':');
    if (colon > 0) out.push([lines[i].slice(0, colon), lines[i].slice(colon + 1).trim()]);
  }
  return out;
}

/** A response head as HTTP/1.1 bytes (the connector's answers that do not come from a spliced origin socket). */
export function responseHeadBytes(status: number, reason: string, headers: [string, string][]): string {
  let s = `HTTP/1.1 ${status} ${reason}\r\n`;
  for (const [k, v] of headers) s += `${k}: ${v}\r\n`;
  return `${s}\r\n`;
}

type ReaderState = 'head' | 'length' | 'chunk-size' | 'chunk-data' | 'chunk-crlf' | 'trailer' | 'close' | 'done';

/** Response headers the edge drops on the way to its client (hop-by-hop for this connection). */
const RESPONSE_DROPPED = new Set(['connection', 'keep-alive', 'proxy-connection']);
const STATUS_LINE = /^HTTP\/1\.[01] (\d{3})(?: |$)/;
/** A response head or a chunk-size line longer than this is refused. */
const MAX_LINE = 64 * 1024;

/**
 * Where one response ends, from its bytes as they come (RFC 9112 §6.3): interim 1xx heads,
 * then no body (HEAD, 204, 304), Content-Length, chunked (passed through as chunked), or the
 * end of the stream. The head is rewritten (hop-by-hop Connection/Keep-Alive dropped;
 * `Connection: close` when the client's connection must close after it); body bytes are
 * handed on as views.
 */
export class ResponseReader {
  state: ReaderState = 'head';
  /** Final status (0 until its head arrived). */
  status = 0;
  /** The client connection must close after this response (asked for, or close-delimited). */
  close: boolean;
  /** Header lines added to the final response head (a forwarded answer's Proxy-Status), CRLF-terminated; '' for none. */
  extra = '';
  #pending: Buffer | undefined;
  #left = 0;

  /**
   * `keepAlive`: header lines for a response the connection outlives (as Node's server sends
   * them: a client that reuses connections learns the edge's keep-alive timeout, and does not
   * reuse one the edge is about to close).
   */
  constructor(
    private readonly headRequest: boolean,
    close: boolean,
    private readonly keepAlive = '',
  ) {
    this.close = close;
  }

  get done(): boolean {
    return this.state === 'done';
  }

  /**
   * Feeds response bytes; pushes what goes to the client into `out`. Returns the number of
   * bytes of `chunk` used (less than its length only once the response ended: the rest is
   * not this response's). Throws OXY_ERR_PROTOCOL_MALFORMED on a response it cannot frame.
   */
  feed(chunk: Buffer, out: Buffer[]): number {
    let buf = chunk;
    let base = 0;
    if (this.#pending) {
      base = this.#pending.length;
      buf = Buffer.concat([this.#pending, chunk]);
      this.#pending = undefined;
    }
    let off = 0;
    let from = 0; // start of body bytes not yet handed on
    const flush = (to: number): void => {
      if (to > from) out.push(buf.subarray(from, to));
    };
    while (off < buf.length && this.state !== 'done') {
      switch (this.state) {
        case 'head': {
          const end = buf.indexOf(CRLF2, off);
          if (end < 0) return this.#keep(buf, off, base, chunk.length);
          out.push(this.#head(buf.toString('latin1', off, end)));
          off = from = end + 4;
          break;
        }
        case 'length': {
          const n = Math.min(this.#left, buf.length - off);
          off += n;
          this.#left -= n;
          if (this.#left === 0) this.state = 'done';
          break;
        }
        case 'close':
          off = buf.length;
          break;
        case 'chunk-data': {
          const n = Math.min(this.#left, buf.length - off);
          off += n;
          this.#left -= n;
          if (this.#left === 0) {
            this.state = 'chunk-crlf';
            this.#left = 2;
          }
          break;
        }
        case 'chunk-crlf': {
          const n = Math.min(this.#left, buf.length - off);
          off += n;
          this.#left -= n;
          if (this.#left === 0) this.state = 'chunk-size';
          break;
        }
        case 'chunk-size':
        case 'trailer': {
          const eol = buf.indexOf('\r\n', off, 'latin1');
          if (eol < 0) {
            flush(off);
            return this.#keep(buf, off, base, chunk.length);
          }
          const line = buf.toString('latin1', off, eol);
          off = eol + 2;
          if (this.state === 'trailer') {
            if (line === '') this.state = 'done';
            break;
          }
          const size = Number.parseInt(line.split(';', 1)[0].trim(), 16);
          if (!Number.isSafeInteger(size) || size < 0 || !/^[0-9a-fA-F]+$/.test(line.split(';', 1)[0].trim()))
            throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', 'bad chunk size in a response');
          if (size === 0) this.state = 'trailer';
          else {
            this.state = 'chunk-data';
            this.#left = size;
          }
          break;
        }
      }
    }
    flush(off);
    return off - base;
  }

  /** The stream ended: a close-delimited response is complete, any other is cut short. */
  end(): boolean {
    if (this.state === 'close') this.state = 'done';
    return this.state === 'done';
  }

  /** Keeps an incomplete head or line for the next chunk; the whole chunk was used. */
  #keep(buf: Buffer, off: number, _base: number, used: number): number {
    if (buf.length - off > MAX_LINE) throw new OxyError('OXY_ERR_PROTOCOL_OVERSIZE', 'response head too large');
    this.#pending = Buffer.from(buf.subarray(off));
    return used;
  }

  #head(text: string): Buffer {
    const lines = text.split('\r\n');
    const m = STATUS_LINE.exec(lines[0]);
    if (!m) throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', 'bad status line in a response');
    const status = Number(m[1]);
    let length: number | undefined;
    let chunked = false;
    let other = false;
    let head = `${lines[0]}\r\n`;
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i];
      const colon = line.indexOf(':');
      if (colon <= 0) throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', 'bad header line in a response');
      const key = line.slice(0, colon).trim().toLowerCase();
      if (RESPONSE_DROPPED.has(key)) continue;
      const value = line.slice(colon + 1).trim();
      if (key === 'content-length') {
        const n = /^\d{1,15}$/.test(value) ? Number(value) : Number.NaN;
        if (Number.isNaN(n) || (length !== undefined && length !== n)) throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', 'bad Content-Length in a response');
        length = n;
      } else if (key === 'transfer-encoding') {
        chunked = /(^|,)\s*chunked\s*$/i.test(value);
        other = !chunked;
      }
      head += `${line}\r\n`;
    }
    if (status < 200) return Buffer.from(`${head}\r\n`, 'latin1'); // interim: the final head follows
    this.status = status;
    if (this.headRequest || status === 204 || status === 304) this.state = 'done';
    else if (chunked) this.state = 'chunk-size';
    else if (other || length === undefined) {
      this.state = 'close';
      this.close = true;
    } else if (length === 0) this.state = 'done';
    else {
      this.state = 'length';
      this.#left = length;
    }
    head += this.close ? 'Connection: close\r\n' : this.keepAlive;
    return Buffer.from(`${head}${this.extra}\r\n`, 'latin1');
  }
}
