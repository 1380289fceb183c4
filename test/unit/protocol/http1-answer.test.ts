// The edge's native response framer (cpp/http1-answer.cc) must read every answer as
// ResponseReader does (where it ends, its status, the rewritten head byte for byte, what it
// refuses): both are fed the same generated answers, split at random points.
import { describe, expect, it } from 'vitest';
import { pick, rng } from '../../helpers/random.js';
import { native, nativeAvailable } from '../../../src/engine/native/binding.js';
import { answerStatus, ResponseReader } from '../../../src/engine/protocol/http1.js';

const KEEP = 'Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n';
const EXTRA = 'Proxy-Status: edge-a; next-hop="b"\r\n';

interface Outcome {
  out: string;
  used: number[];
  done: boolean;
  status: number;
  close: boolean;
  error: boolean;
  /** Refused before any head of it was framed (the edge answers its 502 page instead). */
  untouched: boolean;
}

function viaJs(chunks: Buffer[], headRequest: boolean, close: boolean, extra: string): Outcome {
  const reader = new ResponseReader(headRequest, close, KEEP);
  reader.extra = extra;
  const out: Buffer[] = [];
  const used: number[] = [];
  let error = false;
  for (const c of chunks) {
    const part: Buffer[] = [];
    try {
      used.push(reader.feed(c, part));
    } catch {
      error = true;
      used.push(-1);
      break;
    }
    out.push(...part);
    if (reader.done) break;
  }
  return {
    out: Buffer.concat(out).toString('latin1'),
    used,
    done: reader.done,
    status: error ? -1 : reader.status,
    close: reader.close,
    error,
    untouched: error && reader.untouched,
  };
}

function viaNative(chunks: Buffer[], headRequest: boolean, close: boolean, extra: string): Outcome {
  const r = native().frameAnswer(chunks, headRequest, close, KEEP, extra);
  const error = r.error !== undefined;
  // On an error JS drops the failing chunk's output: compare what went before it.
  let out = r.out.toString('latin1');
  if (error) {
    const before = viaJs(chunks.slice(0, r.used.length - 1), headRequest, close, extra).out;
    out = out.slice(0, before.length);
  }
  return { out, used: r.used, done: r.done, status: error ? -1 : r.status, close: r.close, error, untouched: error && r.untouched };
}

const STATUS = [
  'HTTP/1.1 200 OK',
  'HTTP/1.0 404 Not Found',
  'HTTP/1.1 204',
  'HTTP/1.1 304 Not Modified',
  'HTTP/1.1 100 Continue',
  'HTTP/1.1 103 Early Hints',
  'HTTP/1.1 101',
  'HTTP/1.1 200x',
  'HTTP/2.0 200 OK',
  'HTTP/1.1 20 OK',
  'http/1.1 200 OK',
  'HTTP/1.1 999 Odd',
  'HTTP/1.1 000',
];
const WS = ['', ' ', '  ', '\t', '\xa0', '\x0b', '\x85'];
const NAMES = [
  'Content-Length',
  'content-length',
  'Transfer-Encoding',
  'Connection',
  'CONNECTION',
  'Keep-Alive',
  'Proxy-Connection',
  'Server',
  'X-A',
  'Set-Cookie',
  'Trailer',
];
const TE = ['chunked', 'Chunked', 'gzip, chunked', 'chunked, gzip', 'gzip,chunked', 'xchunked', 'gzip', 'CHUNKED', ' chunked', 'a,\xa0chunked'];

function header(r: () => number, body: string): string {
  const name = pick(r, NAMES);
  const lower = name.toLowerCase();
  let value: string;
  if (lower === 'content-length')
    value = pick(r, [String(body.length), String(body.length), '0', '12345678901234567', '-1', '1e3', '', String(body.length + 1), ` ${body.length}`]);
  else if (lower === 'transfer-encoding') value = pick(r, TE);
  else if (lower === 'connection') value = pick(r, ['close', 'keep-alive', 'Upgrade']);
  else value = pick(r, ['x', 'a:b', '', 'v\xe9', 'timeout=9']);
  // Whitespace before a name now and then: obs-fold, refused by both (most answers are not).
  // Whitespace before the colon or an odd name now and then: refused by both too.
  const spelled = r() < 0.05 ? pick(r, ['X A', 'X\xe9', 'X"A', 'X\x7fA', 'X{A}']) : name;
  // Around the value: whitespace JS trims, a control (\v, a bare LF, NUL: refused by both) now and then.
  const around = (): string =>
    r() < 0.03
      ? pick(r, ['\x0b', '\n', '\0', '\r'])
      : pick(
          r,
          WS.filter((w) => w !== '\x0b'),
        );
  return `${r() < 0.05 ? pick(r, WS) : ''}${spelled}${r() < 0.05 ? pick(r, [' ', '\t']) : ''}:${around()}${value}${around()}`;
}

function chunkedBody(r: () => number): string {
  let s = '';
  const n = Math.floor(r() * 3);
  for (let i = 0; i < n; i++) {
    const len = 1 + Math.floor(r() * 20);
    const size = pick(r, [len.toString(16), len.toString(16).toUpperCase(), `0${len.toString(16)}`, `${len.toString(16)};ext=1`, ` ${len.toString(16)} `]);
    s += `${size}\r\n${'y'.repeat(len)}\r\n`;
  }
  s += pick(r, [
    '0\r\n\r\n',
    '0\r\nX-T: 1\r\n\r\n',
    '0\r\nX-T: 1\r\n folded\r\n\r\n',
    '0\r\nX-T : 1\r\n\r\n',
    '0\r\nno colon\r\n\r\n',
    '0;a\r\n\r\n',
    'g\r\n\r\n',
    '00000000000000000\r\n\r\n',
    '20000000000000\r\n',
  ]);
  return s;
}

function answer(r: () => number): string {
  let s = '';
  if (r() < 0.2) s += 'HTTP/1.1 100 Continue\r\nX-I: 1\r\n\r\n';
  const body = r() < 0.5 ? 'hello' : '';
  const lines = [pick(r, STATUS)];
  const n = Math.floor(r() * 6);
  for (let i = 0; i < n; i++) lines.push(header(r, body));
  if (r() < 0.05) lines.push('NoColon');
  if (r() < 0.05) lines.push(':empty-name');
  s += `${lines.join('\r\n')}\r\n\r\n`;
  s += lines.some((l) => /transfer-encoding/i.test(l)) && r() < 0.7 ? chunkedBody(r) : body;
  if (r() < 0.3) s += 'HTTP/1.1 200 OK\r\n\r\n'; // bytes past the end
  return s;
}

function split(r: () => number, bytes: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  while (off < bytes.length) {
    const n = r() < 0.3 ? bytes.length - off : 1 + Math.floor(r() * 12);
    out.push(bytes.subarray(off, off + n));
    off += n;
  }
  return out;
}

describe.skipIf(!nativeAvailable())('the native response framer reads answers as ResponseReader does', () => {
  it('agrees on plain answers: lengths, chunked, close-delimited, HEAD, interim heads', () => {
    const cases: [string, boolean, boolean][] = [
      ['HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\nKeep-Alive: timeout=3\r\n\r\nhello', false, false],
      ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n', false, false],
      ['HTTP/1.1 200 OK\r\nServer: x\r\n\r\nuntil the end', false, false],
      ['HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n', true, false],
      ['HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok', false, true],
      ['HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n', false, false],
    ];
    for (const [text, head, close] of cases) {
      const chunks = [Buffer.from(text, 'latin1')];
      for (const extra of ['', EXTRA]) expect(viaNative(chunks, head, close, extra), text).toEqual(viaJs(chunks, head, close, extra));
    }
  });

  it('agrees on 20,000 generated answers split at random points', () => {
    const r = rng(16);
    for (let i = 0; i < 20_000; i++) {
      const bytes = Buffer.from(answer(r), 'latin1');
      const chunks = split(r, bytes);
      const head = r() < 0.1;
      const close = r() < 0.2;
      const extra = r() < 0.5 ? EXTRA : '';
      expect(viaNative(chunks, head, close, extra), `case ${i}: ${JSON.stringify(bytes.toString('latin1'))}`).toEqual(viaJs(chunks, head, close, extra));
    }
  });

  it("counts an answer's status from its first read as the connector's JS path does (answerStatus)", () => {
    const r = rng(12);
    const heads = [...STATUS, 'HTTP/1.2 200 OK', 'HTTP/1.a 200', 'HTTP/1.1  200', 'HTTP/1.1 2', 'HTTP/1.1 20', 'HTTP/1.1 200', 'xHTTP/1.1 200', 'HTTP/1.1 -20'];
    let counted = 0;
    for (let i = 0; i < 5_000; i++) {
      const full = Buffer.from(`${pick(r, heads)}\r\nContent-Length: 0\r\n\r\n`, 'latin1');
      const first = full.subarray(0, r() < 0.3 ? Math.floor(r() * 14) : full.length);
      const js = answerStatus(first);
      expect(native().answerStatus(first), JSON.stringify(first.toString('latin1'))).toBe(js);
      if (js > 0) counted++;
    }
    expect(counted).toBeGreaterThan(1_000);
    expect(native().answerStatus(Buffer.from('HTTP/1.2 200 OK\r\n\r\n'))).toBe(0);
  });

  it('refuses obs-fold in a head or in trailers (RFC 9112 §5.2), as ResponseReader does', () => {
    const folded = [
      'HTTP/1.1 200 OK\r\nX-A: 1\r\n Connection: close\r\nContent-Length: 5\r\n\r\nhello',
      'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: a\r\n\tb\r\n\r\nhello',
      'HTTP/1.1 200 OK\r\n Content-Length: 5\r\n\r\nhello', // whitespace before the first header
      'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\x0bX-A: 1\r\n\r\nhello',
      'HTTP/1.1 100 Continue\r\nX-I: 1\r\n X-J: 2\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n X-U: 2\r\n\r\n',
    ];
    for (const text of folded) {
      const bytes = Buffer.from(text, 'latin1');
      for (const chunks of [[bytes], [...bytes].map((b) => Buffer.from([b]))]) {
        expect(native().frameAnswer(chunks, false, false, KEEP, '').error, text).toBe('obs-fold in a response');
        const reader = new ResponseReader(false, false, KEEP);
        expect(() => chunks.forEach((c) => reader.feed(c, [])), text).toThrow('obs-fold in a response');
      }
    }
    // Whitespace inside a line is no fold: taken as before.
    const plain = Buffer.from('HTTP/1.1 200 OK\r\nX-A:  spaced \r\nContent-Length: 0\r\n\r\n', 'latin1');
    expect(native().frameAnswer([plain], false, false, KEEP, '')).toMatchObject({ done: true, status: 200 });
  });

  it('refuses a header or trailer name that is no token (whitespace before the colon: RFC 9112 §5.1) or a control in a value or reason phrase, as ResponseReader does', () => {
    const cases: [string, string][] = [
      ['HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello', 'bad header name in a response'],
      ['HTTP/1.1 200 OK\r\nX-A\t: 1\r\nContent-Length: 5\r\n\r\nhello', 'bad header name in a response'],
      ['HTTP/1.1 200 OK\r\nX A: 1\r\nContent-Length: 5\r\n\r\nhello', 'bad header name in a response'],
      ['HTTP/1.1 200 OK\r\nX\xe9: 1\r\nContent-Length: 5\r\n\r\nhello', 'bad header name in a response'],
      ['HTTP/1.1 200 OK\r\nConnection : close\r\nContent-Length: 5\r\n\r\nhello', 'bad header name in a response'],
      ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T : 1\r\n\r\n', 'bad trailer line in a response'],
      ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nno colon\r\n\r\n', 'bad trailer line in a response'],
    ];
    for (const [text, why] of cases) {
      const chunks = [Buffer.from(text, 'latin1')];
      expect(native().frameAnswer(chunks, false, false, KEEP, '').error, text).toBe(why);
      expect(() => new ResponseReader(false, false, KEEP).feed(chunks[0]!, []), text).toThrow(why);
    }
    // Values and reason phrases: no control but HTAB (a bare LF would end the line for a lenient client).
    const values: [string, string][] = [
      ['HTTP/1.1 200 OK\r\nX-A: a\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello', 'bad header value in a response'],
      ['HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 5\r\n\r\nhello', 'bad header value in a response'],
      ['HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 5\r\n\r\nhello', 'bad header value in a response'],
      ['HTTP/1.1 200 OK\r\nConnection: close\x7f\r\nContent-Length: 5\r\n\r\nhello', 'bad header value in a response'],
      ['HTTP/1.1 200 O\nK\r\nContent-Length: 5\r\n\r\nhello', 'bad status line in a response'],
      ['HTTP/1.1 200 O\0K\r\nContent-Length: 5\r\n\r\nhello', 'bad status line in a response'],
      ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: a\nb\r\n\r\n', 'bad trailer line in a response'],
    ];
    for (const [text, why] of values) {
      const chunks = [Buffer.from(text, 'latin1')];
      expect(native().frameAnswer(chunks, false, false, KEEP, '').error, text).toBe(why);
      expect(() => new ResponseReader(false, false, KEEP).feed(chunks[0]!, []), text).toThrow(why);
    }
    const fine = Buffer.from('HTTP/1.1 200 \xe9t\xe9\r\nX-A: a\tb \xff\r\nContent-Length: 0\r\n\r\n', 'latin1');
    expect(native().frameAnswer([fine], false, false, KEEP, '')).toMatchObject({ done: true, status: 200 });
    // Names of every token character are taken.
    const ok = Buffer.from("HTTP/1.1 200 OK\r\n!#$%&'*+-.^_`|~09azAZ: 1\r\nContent-Length: 0\r\n\r\n", 'latin1');
    expect(native().frameAnswer([ok], false, false, KEEP, '')).toMatchObject({ done: true, status: 200 });
    expect(viaJs([ok], false, false, '')).toEqual(viaNative([ok], false, false, ''));
  });

  it('refuses a head past 64 KiB, as ResponseReader does', () => {
    const chunks = [Buffer.from(`HTTP/1.1 200 OK\r\nX: ${'a'.repeat(70_000)}`, 'latin1')];
    expect(viaNative(chunks, false, false, '').error).toBe(true);
    expect(viaJs(chunks, false, false, '').error).toBe(true);
  });
});
