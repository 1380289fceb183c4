// The edge's native request scanner (cpp/http1-answer.cc ScanPlainRequest) forwards a client's
// request head without JS: whatever it takes must be exactly what scanRequest + encodeHeadRecord
// make of it (a bodyless keep-alive request, the whole buffer), and it must take the plain
// requests clients send. Both are fed the same generated heads, hostile ones among them.
import { describe, expect, it } from 'vitest';
import { pick, rng } from '../../helpers/random.js';
import { native, nativeAvailable } from '../../../src/engine/native/binding.js';
import { encodeHeadRecord, scanRequest } from '../../../src/engine/protocol/http1.js';
import { encodeData } from '../../../src/engine/transport/quic/framing.js';

const CLIENT = '198.18.0.7';

/** What JS would write for `head` when it is one whole plain request the native scanner may take, else undefined. */
function viaJs(head: Buffer): Buffer | undefined {
  const fr = scanRequest(head, CLIENT);
  if (!fr || fr.size !== head.length || fr.bodyLength !== 0 || fr.close || fr.expectContinue) return undefined;
  return Buffer.concat(encodeData(encodeHeadRecord(fr)));
}

const LINES = [
  'GET / HTTP/1.1',
  'GET /small HTTP/1.1',
  'HEAD /a?b=c HTTP/1.1',
  'POST /p HTTP/1.1',
  'DELETE /x HTTP/1.1',
  'OPTIONS /o HTTP/1.1',
  'PATCH /q HTTP/1.1',
  'GET / HTTP/1.0',
  'GET http://a/ HTTP/1.1',
  'get / HTTP/1.1',
  'GET  / HTTP/1.1',
  'GET / HTTP/1.1 ',
  'CONNECT a:443 HTTP/1.1',
  'PRI * HTTP/2.0',
  'GET /\x7f HTTP/1.1',
  'GET /\xe9 HTTP/1.1',
  'FOO / HTTP/1.1',
  'GET /a\tb HTTP/1.1',
];
const NAMES = [
  'Host',
  'host',
  'HOST',
  'Content-Length',
  'Transfer-Encoding',
  'Connection',
  'Keep-Alive',
  'Proxy-Connection',
  'TE',
  'Trailer',
  'Upgrade',
  'HTTP2-Settings',
  'Expect',
  'X-Forwarded-For',
  'X-Forwarded-Proto',
  'Proxy-Authorization',
  'User-Agent',
  'Accept',
  'X-A',
  'Bad Name',
  'Bad@Name',
];
const WS = ['', '', ' ', '  ', '\t', '\xa0', '\x0b'];

function value(r: () => number, lower: string): string {
  if (lower === 'host') return pick(r, ['bench.example.com', 'a.example', 'a.example:8080', '', 'A.Example']);
  if (lower === 'content-length') return pick(r, ['0', '00', '5', '', '-1', '12345678901', '0x0']);
  if (lower === 'connection') return pick(r, ['keep-alive', 'Keep-Alive', 'close', 'upgrade', 'keep-alive, close', 'te']);
  if (lower === 'expect') return pick(r, ['100-continue', 'x']);
  if (lower === 'transfer-encoding') return pick(r, ['chunked', 'gzip']);
  if (lower === 'x-forwarded-for') return pick(r, ['198.18.0.1', '', '198.18.0.2, 198.18.0.3']);
  return pick(r, ['x', 'a:b', '', '*/*', 'v\xe9', 'curl/8.0', 'a\rb', 'a\nb']);
}

function head(r: () => number): string {
  const lines = [pick(r, LINES)];
  if (r() < 0.9) lines.push(`Host: ${pick(r, ['bench.example.com', 'a.example'])}`);
  const n = Math.floor(r() * 6);
  for (let i = 0; i < n; i++) {
    const name = pick(r, NAMES);
    lines.push(`${r() < 0.05 ? ' ' : ''}${name}${r() < 0.05 ? ' ' : ''}:${pick(r, WS)}${value(r, name.toLowerCase())}${pick(r, WS)}`);
  }
  if (r() < 0.03) lines.push('NoColon');
  if (r() < 0.03) lines.push(':empty');
  if (r() < 0.3) lines.sort(() => r() - 0.5);
  let s = `${lines.join('\r\n')}\r\n\r\n`;
  const tail = r();
  if (tail < 0.05)
    s += 'GET / HTTP/1.1\r\nHost: a\r\n\r\n'; // pipelined
  else if (tail < 0.1)
    s = s.slice(0, s.length - 1 - Math.floor(r() * 4)); // not whole yet
  else if (tail < 0.13) s += 'body';
  return s;
}

describe.skipIf(!nativeAvailable())('the native request scanner forwards only what JS would, byte for byte', () => {
  it('takes the plain requests clients send', () => {
    const plain = [
      'GET /small HTTP/1.1\r\nHost: bench.example.com\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a.example\r\nUser-Agent: curl/8.0\r\nAccept: */*\r\n\r\n',
      'HEAD /x HTTP/1.1\r\nhost:a.example\r\nConnection: Keep-Alive\r\nX-Forwarded-For: 198.18.0.1\r\n\r\n',
      'POST /p HTTP/1.1\r\nHost: a.example\r\nContent-Length: 0\r\nKeep-Alive: 5\r\n\r\n',
    ];
    for (const text of plain) {
      const bytes = Buffer.from(text, 'latin1');
      const js = viaJs(bytes);
      expect(js, text).toBeDefined();
      expect(native().scanPlainRequest(bytes, CLIENT), text).toEqual(js);
    }
  });

  it('agrees on 30,000 generated heads (or leaves them to JS)', () => {
    const r = rng(10);
    let taken = 0;
    for (let i = 0; i < 30_000; i++) {
      const bytes = Buffer.from(head(r), 'latin1');
      const ours = native().scanPlainRequest(bytes, CLIENT);
      if (ours === undefined) continue;
      taken++;
      expect(ours, `case ${i}: ${JSON.stringify(bytes.toString('latin1'))}`).toEqual(viaJs(bytes));
    }
    // The generator makes plain heads often enough that the check means something.
    expect(taken).toBeGreaterThan(1000);
  });

  it('leaves to JS what it does not forward itself: bodies, close, expect, upgrades, heads past 16 KiB', () => {
    for (const text of [
      'POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n',
      'POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n',
      `GET / HTTP/1.1\r\nHost: a\r\nX: ${'a'.repeat(17_000)}\r\n\r\n`,
      'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n',
    ])
      expect(native().scanPlainRequest(Buffer.from(text, 'latin1'), CLIENT), text).toBeUndefined();
  });
});
