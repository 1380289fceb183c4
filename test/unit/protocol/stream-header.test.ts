import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { expectCode } from '../../helpers/errors.js';
import {
  DEFAULT_MAX_HEADER_SIZE,
  encodeRequestHeader,
  encodeResponseHeader,
  metaGet,
  metaGetAll,
  readStreamHeader,
  StreamHeaderParser,
  type StreamRequestHeader,
} from '../../../src/engine/protocol/stream-header.js';

const request: Omit<StreamRequestHeader, 'type'> = {
  kind: 'http',
  destination: 'http://app.example.test:8080/path?q=1',
  metadata: [
    ['HttpMethod', 'POST'],
    ['HttpHost', 'app.example.test'],
    ['HttpHeader:Set-Cookie', 'a=1'],
    ['HttpHeader:Set-Cookie', 'b=2'],
    ['HttpHeader:X-Ünicode', 'värde ✓'],
  ],
};

describe('stream header', () => {
  it('round-trips a request header in one chunk, repeated keys in order', () => {
    const parser = new StreamHeaderParser();
    const header = parser.push(encodeRequestHeader(request));
    expect(header).toEqual({ type: 'request', ...request });
    expect(metaGetAll(header!.metadata, 'HttpHeader:Set-Cookie')).toEqual(['a=1', 'b=2']);
    expect(metaGet(header!.metadata, 'HttpMethod')).toBe('POST');
    expect(parser.rest()).toEqual([]);
  });

  it('round-trips every kind and a response header', () => {
    for (const kind of ['http', 'websocket', 'tcp', 'ip-packets', 'udp', 'control'] as const) {
      const parsed = new StreamHeaderParser().push(encodeRequestHeader({ kind, destination: '198.18.0.1:53', metadata: [] }));
      expect(parsed).toMatchObject({ type: 'request', kind, destination: '198.18.0.1:53' });
    }
    const response = { status: 1, message: 'dial tcp 198.18.0.1:80: connection refused', metadata: [['HttpStatus', '502']] as const };
    expect(new StreamHeaderParser().push(encodeResponseHeader(response))).toEqual({ type: 'response', ...response });
  });

  it('parses byte by byte and hands back the payload that followed', () => {
    const payload = Buffer.from('payload bytes');
    const wire = Buffer.concat([encodeRequestHeader(request), payload]);
    const parser = new StreamHeaderParser();
    let header = null;
    let i = 0;
    for (; i < wire.length && header === null; i++) header = parser.push(wire.subarray(i, i + 1));
    expect(header).toEqual({ type: 'request', ...request });
    expect(i).toBe(wire.length - payload.length);
    const rest = Buffer.concat([...parser.rest(), wire.subarray(i)]);
    expect(rest.toString()).toBe('payload bytes');
  });

  it('rejects an oversized declared length before the body arrives', () => {
    const parser = new StreamHeaderParser({ maxSize: 1024 });
    const prefix = Buffer.from([0x4f, 0x58, 1, 1, 0, 0, 0x04, 0x01]); // body 1025
    expectCode(() => parser.push(prefix), 'OXY_ERR_PROTOCOL_OVERSIZE');
    expectCode(
      () => encodeRequestHeader({ kind: 'http', destination: 'x'.repeat(100), metadata: [['k', 'v'.repeat(DEFAULT_MAX_HEADER_SIZE)]] }),
      'OXY_ERR_PROTOCOL_OVERSIZE',
    );
  });

  it('rejects garbage with a code as soon as it can tell', () => {
    expectCode(() => new StreamHeaderParser().push(Buffer.from('GET / HTTP/1.1\r\n')), 'OXY_ERR_PROTOCOL_BAD_MAGIC');
    expectCode(() => new StreamHeaderParser().push(Buffer.from([0x16, 0x03])), 'OXY_ERR_PROTOCOL_BAD_MAGIC');
    expectCode(() => new StreamHeaderParser().push(Buffer.from([0x4f, 0x58, 9, 1, 0, 0, 0, 0])), 'OXY_ERR_PROTOCOL_UNSUPPORTED_VERSION');
    expectCode(() => new StreamHeaderParser().push(Buffer.from([0x4f, 0x58, 1, 7, 0, 0, 0, 0])), 'OXY_ERR_PROTOCOL_MALFORMED');
    // declared body shorter than its fields
    const good = encodeRequestHeader(request);
    const cut = Buffer.from(good);
    cut.writeUInt32BE(5, 4);
    expectCode(() => new StreamHeaderParser().push(cut.subarray(0, 13)), 'OXY_ERR_PROTOCOL_MALFORMED');
    // unknown kind
    const badKind = Buffer.from(good);
    badKind[8] = 99;
    expectCode(() => new StreamHeaderParser().push(badKind), 'OXY_ERR_PROTOCOL_MALFORMED');
    // trailing bytes inside the body
    const trailing = Buffer.concat([good, Buffer.from([0])]);
    trailing.writeUInt32BE(good.length - 8 + 1, 4);
    expectCode(() => new StreamHeaderParser().push(trailing), 'OXY_ERR_PROTOCOL_MALFORMED');
    // invalid UTF-8 in the destination
    const enc = encodeRequestHeader({ kind: 'tcp', destination: 'ab', metadata: [] });
    enc[11] = 0xff;
    expectCode(() => new StreamHeaderParser().push(enc), 'OXY_ERR_PROTOCOL_MALFORMED');
    // a response where a request was expected
    expectCode(
      () => new StreamHeaderParser({ expect: 'request' }).push(encodeResponseHeader({ status: 0, message: '', metadata: [] })),
      'OXY_ERR_PROTOCOL_UNEXPECTED_MESSAGE',
    );
  });

  it('reads from a stream, leaves the payload readable, and reports truncation', async () => {
    const stream = new PassThrough();
    const wire = Buffer.concat([encodeRequestHeader(request), Buffer.from('hello')]);
    for (let i = 0; i < wire.length; i += 3) stream.write(wire.subarray(i, i + 3));
    stream.end(' world');
    const header = await readStreamHeader(stream, { expect: 'request' });
    expect(header.destination).toBe(request.destination);
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe('hello world');

    const short = new PassThrough();
    short.end(encodeRequestHeader(request).subarray(0, 20));
    await expect(readStreamHeader(short)).rejects.toMatchObject({ code: 'OXY_ERR_PROTOCOL_TRUNCATED' });

    const garbage = new PassThrough();
    garbage.write('SSH-2.0-OpenSSH\r\n');
    await expect(readStreamHeader(garbage)).rejects.toMatchObject({ code: 'OXY_ERR_PROTOCOL_BAD_MAGIC' });

    const silent = new PassThrough();
    await expect(readStreamHeader(silent, { timeoutMs: 20 })).rejects.toMatchObject({ code: 'OXY_ERR_PROTOCOL_TIMEOUT' });
  });
});
