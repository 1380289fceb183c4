/**
 * The `http1` stream kind (WIRE.md §7): one tunnel stream per keep-alive HTTP/1.1 client
 * connection, its requests framed in band so the connector can pick each one's ingress rule
 * without parsing HTTP, and its responses as raw HTTP/1.1 bytes.
 *
 *   edge → connector  records [u8 type][u32 length][payload]:
 *                     HEAD  u32 body length | u16 len + host | u16 len + path | u8 len + method | request head bytes
 *                     BODY  body bytes as the client sent them (a Content-Length body, or a chunked
 *                           one with its framing when the HEAD says CHUNKED_BODY); they follow their HEAD
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
/** ... and when it takes chunked request bodies on them (a HEAD's body length CHUNKED_BODY). */
export const HTTP1_CHUNKED_FEATURE = 'http1-chunked/1';
/** A HEAD's body length for a chunked body: its BODY records carry the chunked bytes, framing checked by the edge. */
export const CHUNKED_BODY = 0xffffffff;

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
  /** Content-Length, 0 without a body, CHUNKED_BODY for `Transfer-Encoding: chunked`. */
  bodyLength: number;
  /** The client asked to close after this request. */
  close: boolean;
  /** `Expect: 100-continue`: the edge answers 100 itself, as Node's server does, and drops the header (the per-request path's undici refuses it). */
  expectContinue: boolean;
  /** The head as the origin gets it: hop-by-hop headers dropped, X-Forwarded-For/-Proto set. */
  head: string;
  /** Bytes of the client's buffer the head took. */
  size: number;
}

const FAST_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH']);
/** Dropped from the forwarded head, as the per-request path drops them (HOP_BY_HOP, X-Forwarded-Proto). */
const DROPPED = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'proxy-authorization', 'proxy-authenticate', 'x-forwarded-proto']);
/** Headers whose presence needs the full server (upgrades). */
const SLOW = new Set(['upgrade', 'http2-settings']);
const REQUEST_LINE = /^([A-Z]+) (\/[\x21-\x7e]*) HTTP\/1\.1$/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Bytes a plain head never has (controls, obs-text, lone CR/LF are checked per line). */
const ODD = /[^\t\x20-\x7e\r\n]/;

/**
 * A request at the start of `buf` that the fast path can carry, or undefined: an incomplete
 * head, or anything beyond a plain origin-form HTTP/1.1 request with one Host and at most a
 * Content-Length body or one `Transfer-Encoding: chunked`, and at most `Expect: 100-continue`
 * (absolute targets, upgrades, other expectations, other transfer codings, both framings at once, HTTP/1.0, odd bytes, a second Host,
 * Content-Length or Transfer-Encoding) — Node's server then takes the connection, with its
 * limits and error answers. A chunked body's framing is checked as it comes (ChunkedBody).
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
  let chunked: boolean | undefined;
  let expect: boolean | undefined;
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
      // A length the HEAD record cannot carry (u32, CHUNKED_BODY excluded) is Node's too.
      if (length !== undefined || !/^\d{1,10}$/.test(value) || Number(value) >= CHUNKED_BODY) return undefined;
      length = value;
    } else if (key === 'expect') {
      // Only one `100-continue` (curl sends it with every upload of unknown size): Node answers anything else 417.
      if (expect !== undefined || value.toLowerCase() !== '100-continue') return undefined;
      expect = true;
      continue;
    } else if (key === 'transfer-encoding') {
      // Only one plain `chunked`: lists, other codings and repeats are the full parser's.
      if (chunked !== undefined || value.toLowerCase() !== 'chunked') return undefined;
      chunked = true;
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
  if (host === undefined || (chunked && length !== undefined)) return undefined;
  head += `X-Forwarded-For: ${xff ? `${xff}, ${client}` : client}\r\nX-Forwarded-Proto: http\r\n\r\n`;
  return {
    method: first[1],
    host,
    path: first[2],
    bodyLength: chunked ? CHUNKED_BODY : length === undefined ? 0 : Number(length),
    close,
    expectContinue: expect === true,
    head,
    size: end + 4,
  };
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

/** Hex digits a chunk size may have (4 GiB - 1): a longer size is not ours to judge. */
export const MAX_SIZE_DIGITS = 8;
/** Bytes of chunk extensions a size line may have. */
export const MAX_EXTENSIONS = 256;
const SEMI = 0x3b;
const EQUALS = 0x3d;
const CR = 0x0d;
const LF = 0x0a;
const COLON = 0x3a;
/** RFC 9110 tchar, by byte. */
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") TCHAR[c.charCodeAt(0)] = 1;
/** Hex digit values + 1 (0: not a hex digit). */
const HEX = new Uint8Array(256);
for (let i = 0; i < 16; i++) {
  HEX['0123456789abcdef'.charCodeAt(i)] = i + 1;
  HEX['0123456789ABCDEF'.charCodeAt(i)] = i + 1;
}

/** Fields a parser might read as framing or routing even in trailers: refused there. */
const FRAMING = new Set(['content-length', 'transfer-encoding', 'host', 'connection', 'te', 'trailer', 'upgrade', 'expect', 'keep-alive']);

const enum Chunk {
  Size,
  /** In a chunk extension's name (after ';') or value (after '='): tokens only. */
  ExtName,
  ExtValue,
  SizeLf,
  Data,
  DataCr,
  DataLf,
  /** The first byte of a trailer line, or the CR of the empty line that ends the body. */
  TrailerStart,
  TrailerName,
  TrailerValue,
  TrailerLf,
  EndLf,
  Done,
}

/**
 * The framing of a chunked request body (RFC 9112 §7.1), checked byte by byte as it comes and
 * passed on unchanged: only the plainest form — hex sizes of at most 8 digits, chunk extensions
 * as `;name` or `;name=value` tokens with no whitespace or quotes (256 bytes a line), CRLF line ends, trailer fields shaped as the head's fields (no obs-fold, no odd
 * bytes) and at most MAX_FAST_HEAD bytes of them. Anything else throws, so nothing a stricter
 * or laxer parser downstream could read differently is ever passed on: the bytes handed on are
 * a prefix of a body every HTTP/1.1 parser reads the same way.
 */
export class ChunkedBody {
  #state = Chunk.Size;
  #digits = 0;
  /** Bytes of the current extension name or value, and of the line's extensions. */
  #ext = 0;
  #extBytes = 0;
  #left = 0;
  #trailerBytes = 0;
  /** The trailer field name so far, lower case. */
  #name = '';

  /** The last chunk and the trailer section's empty line went by. */
  get done(): boolean {
    return this.#state === Chunk.Done;
  }

  /**
   * Checks `chunk` (body bytes, framing included) and pushes the chunks' data into `data` when
   * given (views). Returns the number of bytes of `chunk` that are body, all checked (less than
   * its length only once the body ended: the rest is the next request). Throws
   * OXY_ERR_PROTOCOL_MALFORMED on framing it does not take.
   */
  feed(chunk: Buffer, data?: Buffer[]): number {
    const n = chunk.length;
    let off = 0;
    while (off < n && this.#state !== Chunk.Done) {
      const c = chunk[off];
      switch (this.#state) {
        case Chunk.Size:
          if (HEX[c] !== 0 && this.#digits < MAX_SIZE_DIGITS) {
            this.#left = this.#left * 16 + HEX[c] - 1;
            this.#digits++;
          } else if (c === CR && this.#digits > 0) this.#state = Chunk.SizeLf;
          else if (c === SEMI && this.#digits > 0) this.#extension(Chunk.ExtName);
          else throw bad('a chunk size line');
          off++;
          break;
        case Chunk.ExtName:
        case Chunk.ExtValue:
          if (++this.#extBytes > MAX_EXTENSIONS) throw bad('a chunk extension (too long)');
          if (TCHAR[c]) this.#ext++;
          else if (this.#ext === 0) throw bad('a chunk extension');
          else if (c === CR) this.#state = Chunk.SizeLf;
          else if (c === SEMI) this.#extension(Chunk.ExtName);
          else if (c === EQUALS && this.#state === Chunk.ExtName) this.#extension(Chunk.ExtValue);
          else throw bad('a chunk extension');
          off++;
          break;
        case Chunk.SizeLf:
          if (c !== LF) throw bad('a chunk size line');
          off++;
          this.#digits = 0;
          this.#extBytes = 0;
          this.#state = this.#left === 0 ? Chunk.TrailerStart : Chunk.Data;
          break;
        case Chunk.Data: {
          const k = Math.min(this.#left, n - off);
          data?.push(chunk.subarray(off, off + k));
          off += k;
          this.#left -= k;
          if (this.#left === 0) this.#state = Chunk.DataCr;
          break;
        }
        case Chunk.DataCr:
        case Chunk.DataLf:
          if (c !== (this.#state === Chunk.DataCr ? CR : LF)) throw bad('the end of a chunk');
          off++;
          this.#state = this.#state === Chunk.DataCr ? Chunk.DataLf : Chunk.Size;
          break;
        case Chunk.TrailerStart:
          if (c === CR) this.#state = Chunk.EndLf;
          else if (TCHAR[c]) {
            this.#state = Chunk.TrailerName;
            this.#name = lower(c);
          } else throw bad('a trailer field');
          off = this.#trailer(off);
          break;
        case Chunk.TrailerName:
          if (c === COLON) {
            if (FRAMING.has(this.#name)) throw bad('a framing field in the trailers');
            this.#state = Chunk.TrailerValue;
          } else if (TCHAR[c]) this.#name += lower(c);
          else throw bad('a trailer field');
          off = this.#trailer(off);
          break;
        case Chunk.TrailerValue:
          if (c === CR) this.#state = Chunk.TrailerLf;
          else if (c !== 0x09 && (c < 0x20 || c > 0x7e)) throw bad('a trailer field');
          off = this.#trailer(off);
          break;
        case Chunk.TrailerLf:
        case Chunk.EndLf:
          if (c !== LF) throw bad('a trailer field');
          this.#state = this.#state === Chunk.EndLf ? Chunk.Done : Chunk.TrailerStart;
          off = this.#trailer(off);
          break;
      }
    }
    return off;
  }

  /**
   * Where the checker stands, as numbers another checker can go on from (cpp/http1-answer.cc
   * ChunkCheck: the edge's native body reads): [state, left, digits, ext, extBytes]. Undefined
   * once the trailers began (their field name is not handed over) or the body ended.
   */
  handOver(): number[] | undefined {
    if (this.#state >= Chunk.TrailerStart) return undefined;
    return [this.#state, this.#left, this.#digits, this.#ext, this.#extBytes];
  }

  /** A chunk extension's name or value starts (it must have a byte). */
  #extension(state: Chunk): void {
    this.#state = state;
    this.#ext = 0;
  }

  /** One more byte of the trailer section, within its bound. */
  #trailer(off: number): number {
    if (++this.#trailerBytes > MAX_FAST_HEAD) throw bad('the trailer section (too large)');
    return off + 1;
  }
}

const lower = (c: number): string => String.fromCharCode(c >= 0x41 && c <= 0x5a ? c | 0x20 : c);
const bad = (what: string): OxyError => new OxyError('OXY_ERR_PROTOCOL_MALFORMED', `chunked body: ${what} the fast path does not take`);

export interface HeadRecord {
  bodyLength: number;
  host: string;
  path: string;
  method: string;
  /** The request head bytes as the origin gets them. */
  head: Buffer;
}

/** Largest record accepted (a HEAD is at most MAX_FAST_HEAD plus its fields; BODY records are the edge's reads). */
export const MAX_RECORD = 1024 * 1024;

/**
 * Reads records off the connector's side of an http1 stream: `push` chunks, get each HEAD
 * whole and BODY bytes as they come (views into the chunks, no copy: a 64 KiB BODY record
 * arrives as four 16 KiB TLS records, and gathering it would copy it about twice).
 */
export class Http1RecordReader {
  #pending: Buffer | undefined;
  /** Bytes of the current BODY record still to come. */
  #bodyLeft = 0;

  constructor(
    private readonly onHead: (head: HeadRecord) => void,
    private readonly onBody: (bytes: Buffer) => void,
  ) {}

  /** Between records: nothing of one read yet. */
  get atBoundary(): boolean {
    return this.#pending === undefined && this.#bodyLeft === 0;
  }

  /** BODY bytes of the record being read still to come (0 between records); undefined when a record header or HEAD is half-read. */
  get bodyLeft(): number | undefined {
    return this.#pending === undefined ? this.#bodyLeft : undefined;
  }

  /** Another reader took the rest of the records (the addon's pump): this one stands between records. */
  handOver(): void {
    this.#bodyLeft = 0;
  }

  push(chunk: Buffer): void {
    let buf = chunk;
    let off = 0;
    if (this.#bodyLeft > 0) {
      off = Math.min(this.#bodyLeft, buf.length);
      this.#bodyLeft -= off;
      this.onBody(off === buf.length ? buf : buf.subarray(0, off));
    } else if (this.#pending) {
      // A record header (or a HEAD) split across chunks: rare and small.
      buf = Buffer.concat([this.#pending, chunk]);
      this.#pending = undefined;
    }
    while (buf.length - off >= 5) {
      const type = buf[off];
      const len = buf.readUInt32BE(off + 1);
      if (len > MAX_RECORD) throw new OxyError('OXY_ERR_PROTOCOL_OVERSIZE', `http1 record of ${len} bytes`);
      if (type === Http1Record.BODY) {
        const n = Math.min(len, buf.length - off - 5);
        const bytes = buf.subarray(off + 5, off + 5 + n);
        off += 5 + n;
        this.#bodyLeft = len - n;
        if (n > 0) this.onBody(bytes);
        continue;
      }
      if (buf.length - off - 5 < len) break;
      const payload = buf.subarray(off + 5, off + 5 + len);
      off += 5 + len;
      if (type === Http1Record.HEAD) this.onHead(decodeHead(payload));
      else throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', `Unknown http1 record type ${type}`);
    }
    if (off < buf.length) this.#pending = off === 0 ? buf : buf.subarray(off);
  }
}

/** A HEAD record's payload (read whole elsewhere: the connector's QUIC pump). */
export function decodeHead(p: Buffer): HeadRecord {
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
/** What a field value or a reason phrase may hold: HTAB, SP, VCHAR, obs-text (RFC 9110 §5.5) — no NUL, CR, LF or other control. */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
/** A field name: a token (RFC 9110 §5.6.2). */
const FIELD_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * The status an origin's answer starts with, from its first read (0: not "HTTP/1.0 NNN" or
 * "HTTP/1.1 NNN"), for the counts by status. The addon's pumps count with AnswerStatus
 * (native/cpp/http1-answer.cc), the same rule: test/unit/protocol/http1-answer.test.ts compares them.
 */
export function answerStatus(chunk: Buffer): number {
  const m = ANSWER_STATUS.exec(chunk.toString('latin1', 0, 12));
  return m ? Number(m[1]) : 0;
}
const ANSWER_STATUS = /^HTTP\/1\.[01] (\d{3})/;
/** A response head or a chunk-size line longer than this is refused. */
export const MAX_LINE = 64 * 1024;

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
  #heads = 0;

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

  /** Nothing of this answer framed yet (no head, interim ones included): a refusal now can be replaced by the edge's 502 page. AnswerFramer::untouched the same. */
  get untouched(): boolean {
    return this.state === 'head' && this.#heads === 0;
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
            if (/^\s/.test(line)) throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', 'obs-fold in a response'); // as in the head
            if (line === '') this.state = 'done';
            else {
              const colon = line.indexOf(':');
              if (colon < 0 || !FIELD_NAME.test(line.slice(0, colon)) || !FIELD_VALUE.test(line.slice(colon + 1)))
                throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', 'bad trailer line in a response');
            }
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
    // The reason phrase: no bare CR or LF (a client would end the line there), no control.
    if (!m || !FIELD_VALUE.test(lines[0].slice(12))) throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', 'bad status line in a response');
    const status = Number(m[1]);
    let length: number | undefined;
    let chunked = false;
    let other = false;
    let head = `${lines[0]}\r\n`;
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i];
      // Obs-fold (a line continuing the one before) or whitespace before the first header: refused
      // (RFC 9112 §5.2), never read as a header of its own. AnswerFramer (cpp/http1-answer.cc) the same.
      if (/^\s/.test(line)) throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', 'obs-fold in a response');
      const colon = line.indexOf(':');
      if (colon <= 0) throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', 'bad header line in a response');
      // A token, nothing around it (RFC 9112 §5.1: no whitespace before the colon). AnswerFramer the same.
      const name = line.slice(0, colon);
      if (!FIELD_NAME.test(name)) throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', 'bad header name in a response');
      const key = name.toLowerCase();
      // No bare CR or LF (a client may end the line there: `X-A: a\nTransfer-Encoding: chunked`), no NUL or other control.
      if (!FIELD_VALUE.test(line.slice(colon + 1))) throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', 'bad header value in a response');
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
    this.#heads++;
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
