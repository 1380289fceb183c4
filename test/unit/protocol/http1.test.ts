import { describe, expect, it } from 'vitest';
import {
  bodyRecordHeader,
  CHUNKED_BODY,
  ChunkedBody,
  encodeHeadRecord,
  Http1RecordReader,
  ResponseReader,
  scanRequest,
  type HeadRecord,
} from '../../../src/engine/protocol/http1.js';

const req = (text: string) => Buffer.from(text, 'latin1');

describe('scanRequest (the public listener reads only what routing and framing need)', () => {
  it('takes a plain request: Host, Content-Length, forwarding headers set, hop-by-hop dropped', () => {
    const text =
      'POST /a?b=1 HTTP/1.1\r\nHost: app.example.com\r\nX-Forwarded-For: 198.18.0.9\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nX-Forwarded-Proto: https\r\nContent-Length: 3\r\n\r\nabc';
    const r = scanRequest(req(text), '198.18.0.1');
    expect(r).toMatchObject({ method: 'POST', host: 'app.example.com', path: '/a?b=1', bodyLength: 3, close: false, size: text.length - 3 });
    expect(r!.head).toBe(
      'POST /a?b=1 HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 3\r\nX-Forwarded-For: 198.18.0.9, 198.18.0.1\r\nX-Forwarded-Proto: http\r\n\r\n',
    );
  });

  it('notes Connection: close', () => {
    expect(scanRequest(req('GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n'), '::1')?.close).toBe(true);
  });

  it.each([
    ['an incomplete head', 'GET / HTTP/1.1\r\nHost: a\r\n'],
    ['HTTP/1.0', 'GET / HTTP/1.0\r\nHost: a\r\n\r\n'],
    ['an absolute target', 'GET http://b/ HTTP/1.1\r\nHost: a\r\n\r\n'],
    ['no Host', 'GET / HTTP/1.1\r\n\r\n'],
    ['two Hosts', 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'],
    ['two Content-Lengths', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx'],
    ['a Content-Length list', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\nx'],
    ['chunked with a Content-Length', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n'],
    ['a Content-Length with chunked', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
    ['two Transfer-Encodings', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
    ['a coding list', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n'],
    ['another coding', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n'],
    ['a length a HEAD record cannot carry', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4294967295\r\n\r\n'],
    ['a 15-digit length', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 999999999999999\r\n\r\n'],
    ['an upgrade', 'GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n'],
    ['another expectation', 'POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\n'],
    ['two Expects', 'POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n'],
    ['obs-fold', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: a\r\n b\r\n\r\n'],
    ['a space before the colon', 'GET / HTTP/1.1\r\nHost : a\r\n\r\n'],
    ['a bare LF', 'GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n'],
    ['a NUL', 'GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n'],
    ['the HTTP/2 preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'],
    ['a huge head', `GET / HTTP/1.1\r\nHost: a\r\nX: ${'a'.repeat(20_000)}\r\n\r\n`],
  ])('leaves %s to Node’s server', (_what, text) => {
    expect(scanRequest(req(text), '::1')).toBeUndefined();
  });
});

describe('scanRequest and chunked bodies', () => {
  it('takes one plain Transfer-Encoding: chunked and keeps it in the head the origin gets', () => {
    const r = scanRequest(req('PUT /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'), '::1');
    expect(r).toMatchObject({ method: 'PUT', bodyLength: CHUNKED_BODY });
    expect(r!.head).toContain('\r\nTransfer-Encoding: Chunked\r\n');
  });

  it('takes Expect: 100-continue (curl sends it with uploads) and drops it from the head', () => {
    const r = scanRequest(req('PUT /u HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nTransfer-Encoding: chunked\r\n\r\n'), '::1');
    expect(r).toMatchObject({ expectContinue: true, bodyLength: CHUNKED_BODY });
    expect(r!.head).not.toMatch(/expect/i);
    expect(scanRequest(req('GET / HTTP/1.1\r\nHost: a\r\n\r\n'), '::1')?.expectContinue).toBe(false);
  });
});

/** Feeds `text` to a ChunkedBody in pieces of `step` bytes: the body's bytes, its data, and the bytes after it. */
function chunks(text: string, step: number) {
  const c = new ChunkedBody();
  const bytes = Buffer.from(text, 'latin1');
  const body: Buffer[] = [];
  const data: Buffer[] = [];
  let rest = '';
  for (let i = 0; i < bytes.length; i += step) {
    const piece = bytes.subarray(i, i + step);
    if (c.done) {
      rest += piece.toString('latin1');
      continue;
    }
    const used = c.feed(piece, data);
    body.push(piece.subarray(0, used));
    rest += piece.subarray(used).toString('latin1');
  }
  return { done: c.done, body: Buffer.concat(body).toString('latin1'), data: Buffer.concat(data).toString('latin1'), rest };
}

describe('ChunkedBody (a chunked request body, checked and passed on unchanged)', () => {
  const body = '5\r\nhello\r\n00A;a=1;b\r\n0123456789\r\n0;last\r\nX-Sum: abc\r\nX-Other:\tv v\r\n\r\n';
  it.each([1, 2, 3, 5, 7, 1000])('finds where the body ends, its data and the next request, in pieces of %i bytes', (step) => {
    expect(chunks(`${body}GET / HTTP/1.1\r\n`, step)).toEqual({ done: true, body, data: 'hello0123456789', rest: 'GET / HTTP/1.1\r\n' });
    expect(chunks('0\r\n\r\nnext', step)).toEqual({ done: true, body: '0\r\n\r\n', data: '', rest: 'next' });
  });

  it('is not done before the last chunk and the empty line', () => {
    expect(chunks('5\r\nhello\r\n0\r\n', 100)).toMatchObject({ done: false, body: '5\r\nhello\r\n0\r\n' });
    expect(chunks('5\r\nhel', 100)).toMatchObject({ done: false, data: 'hel' });
  });

  it.each([
    ['a quoted chunk extension', '5;a="b"\r\nhello\r\n0\r\n\r\n'],
    ['an empty extension', '5;\r\nhello\r\n0\r\n\r\n'],
    ['an empty extension value', '5;a=\r\nhello\r\n0\r\n\r\n'],
    ['an extension without a name', '5;=b\r\nhello\r\n0\r\n\r\n'],
    ['two values', '5;a=b=c\r\nhello\r\n0\r\n\r\n'],
    ['whitespace in extensions', '5; a=b\r\nhello\r\n0\r\n\r\n'],
    ['a bare LF after an extension', '5;a=b\nhello\r\n0\r\n\r\n'],
    ['a long extension', `5;a=${'b'.repeat(300)}\r\nhello\r\n0\r\n\r\n`],
    ['an empty size', '\r\nhello\r\n0\r\n\r\n'],
    ['a non-hex size', 'ZZ\r\n'],
    ['a sign', '-1\r\n'],
    ['0x', '0x5\r\nhello\r\n'],
    ['space after the size', '5 \r\nhello\r\n'],
    ['space before the size', ' 5\r\nhello\r\n'],
    ['more than 8 digits', '000000005\r\nhello\r\n'],
    ['an overflowing size', 'fffffffffffffffff1\r\nab\r\n'],
    ['a bare LF after the size', '5\nhello\r\n'],
    ['a bare CR after the size', '5\rhello\r\n'],
    ['data longer than its size', '3\r\nhello\r\n'],
    ['a bare LF after the data', '5\r\nhello\n0\r\n\r\n'],
    ['obs-fold in the trailers', '0\r\nX-A: 1\r\n folded\r\n\r\n'],
    ['a trailer without a colon', '0\r\nX-A\r\n\r\n'],
    ['a space before a trailer colon', '0\r\nX-A : 1\r\n\r\n'],
    ['a NUL in a trailer', '0\r\nX-A: \0\r\n\r\n'],
    ['obs-text in a trailer', '0\r\nX-A: \xff\r\n\r\n'],
    ['a bare LF in the trailers', '0\r\nX-A: 1\n\r\n'],
    ['Content-Length in the trailers', '0\r\nContent-Length: 5\r\n\r\n'],
    ['Transfer-Encoding in the trailers', '0\r\ntransfer-encoding: chunked\r\n\r\n'],
    ['a huge trailer section', `0\r\nX-A: ${'a'.repeat(17_000)}\r\n\r\n`],
  ])('refuses %s, wherever the reads split it', (_what, text) => {
    for (const step of [1, 4, 100_000]) expect(() => chunks(text, step)).toThrow(expect.objectContaining({ code: 'OXY_ERR_PROTOCOL_MALFORMED' }));
  });
});

describe('http1 records', () => {
  it('HEAD and BODY records cross split at every byte', () => {
    const fr = scanRequest(req('POST /p HTTP/1.1\r\nHost: h.example.com\r\nContent-Length: 5\r\n\r\nhello'), '198.18.0.1')!;
    const wire = Buffer.concat([encodeHeadRecord(fr), bodyRecordHeader(5), Buffer.from('hello')]);
    for (let split = 0; split <= wire.length; split++) {
      const heads: HeadRecord[] = [];
      const bodies: string[] = [];
      const reader = new Http1RecordReader(
        (h) => heads.push(h),
        (b) => bodies.push(b.toString()),
      );
      reader.push(wire.subarray(0, split));
      reader.push(wire.subarray(split));
      expect(heads).toHaveLength(1);
      expect(heads[0]).toMatchObject({ method: 'POST', host: 'h.example.com', path: '/p', bodyLength: 5 });
      expect(heads[0].head.toString('latin1')).toBe(fr.head);
      expect(bodies.join('')).toBe('hello');
    }
  });

  it('hands BODY bytes on as they come, as views of the chunks (a record is not gathered first)', () => {
    const payload = Buffer.alloc(40_000, 7);
    const wire = Buffer.concat([bodyRecordHeader(payload.length), payload]);
    const pieces = [wire.subarray(0, 3), wire.subarray(3, 16_384), wire.subarray(16_384, 32_768), wire.subarray(32_768)];
    const got: Buffer[] = [];
    const reader = new Http1RecordReader(
      () => undefined,
      (b) => got.push(b),
    );
    for (const p of pieces) reader.push(p);
    expect(got.map((b) => b.length)).toEqual([16_384 - 5, 16_384, wire.length - 32_768]);
    expect(got[1].buffer).toBe(pieces[2].buffer);
    expect(Buffer.concat(got).equals(payload)).toBe(true);
  });

  it('refuses an unknown record type', () => {
    const reader = new Http1RecordReader(
      () => undefined,
      () => undefined,
    );
    expect(() => reader.push(Buffer.from([9, 0, 0, 0, 0]))).toThrow(expect.objectContaining({ code: 'OXY_ERR_PROTOCOL_MALFORMED' }));
  });
});

/** Feeds `text` in pieces of `step` bytes; returns what went to the client, whether it ended, and the bytes left over. */
function read(text: string, step: number, headRequest = false, close = false) {
  const r = new ResponseReader(headRequest, close);
  const bytes = Buffer.from(text, 'latin1');
  const out: Buffer[] = [];
  let rest = 0;
  for (let i = 0; i < bytes.length && !r.done; i += step) {
    const piece = bytes.subarray(i, i + step);
    const used = r.feed(piece, out);
    if (r.done) rest = bytes.length - i - used;
  }
  return { out: Buffer.concat(out).toString('latin1'), done: r.done, status: r.status, close: r.close, rest, reader: r };
}

describe('ResponseReader (where each answer ends)', () => {
  const chunked = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n5;x=1\r\nhello\r\n0\r\nT: 1\r\n\r\n';
  it.each([1, 2, 3, 7, 1000])('Content-Length, chunked with trailers and interim 1xx, in pieces of %i bytes', (step) => {
    const cl = read('HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nContent-Length: 3\r\n\r\nabcEXTRA', step);
    expect(cl).toMatchObject({ done: true, status: 200, close: false });
    expect(cl.out).toBe('HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc');
    expect(cl.rest).toBe(5);
    const ch = read(chunked, step);
    expect(ch).toMatchObject({ done: true, status: 200, rest: 0 });
    expect(ch.out).toBe('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n0\r\nT: 1\r\n\r\n');
  });

  it('no body after HEAD, 204 and 304, whatever the length says', () => {
    expect(read('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n', 100, true)).toMatchObject({ done: true });
    expect(read('HTTP/1.1 204 No Content\r\n\r\n', 100)).toMatchObject({ done: true, status: 204 });
    expect(read('HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n', 100)).toMatchObject({ done: true });
  });

  it('a response without length ends with the stream, and closes the client connection', () => {
    const r = read('HTTP/1.1 200 OK\r\n\r\nall of it', 4);
    expect(r).toMatchObject({ done: false, close: true });
    expect(r.out).toBe('HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it');
    expect(r.reader.end()).toBe(true);
    expect(read('HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\ncut', 100).reader.end()).toBe(false);
  });

  it('Connection: close for a client that asked for it', () => {
    expect(read('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', 100, false, true).out).toBe(
      'HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n',
    );
  });

  it.each([
    ['a bad status line', 'HTTP/1.1 OK\r\n\r\n'],
    ['conflicting lengths', 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n'],
    ['a bad chunk size', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n'],
  ])('refuses %s', (_what, text) => {
    expect(() => read(text, 100)).toThrow(expect.objectContaining({ code: 'OXY_ERR_PROTOCOL_MALFORMED' }));
  });
});
