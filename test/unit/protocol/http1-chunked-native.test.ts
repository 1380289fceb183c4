// The edge's native body reads check a chunked body with cpp/http1-answer.cc ChunkCheck, going on
// from where JS's ChunkedBody stood (handOver): it must take exactly the bytes ChunkedBody takes,
// end where it ends and refuse what it refuses, however the reads split the body and wherever the
// hand-over happens. Both are fed the same generated bodies, hostile ones among them.
import { describe, expect, it } from 'vitest';
import { pick, rng, split } from '../../helpers/random.js';
import { native, nativeAvailable } from '../../../src/engine/native/binding.js';
import { ChunkedBody, MAX_FAST_HEAD } from '../../../src/engine/protocol/http1.js';

/** Size lines, data and trailers, plain and odd (what the hostile set of http1.test.ts refuses, and more). */
const SIZES = ['5', '00005', '5;a', '5;a=b', '5;a=b;c=d', '5;', '5;=b', '5;a="b"', '5; a', '5 ', ' 5', '000000005', '-5', '0x5', 'g', '', '5;a=b=c'];
const ENDS = ['\r\n', '\r\n', '\r\n', '\n', '\r', '\r\r\n'];
const TRAILERS = [
  '',
  '',
  'X-Sum: abc\r\n',
  'X-A:\tv v\r\nX-B: 1\r\n',
  'Content-Length: 5\r\n',
  'X-A : 1\r\n',
  'X-A\r\n',
  ' folded\r\n',
  'X-A: \x00\r\n',
  'X-A: \xff\r\n',
  'TE: x\r\n',
  'X-A: 1\n',
  // At MAX_FAST_HEAD with the last CRLF, and one byte over it.
  `X-Big: ${'v'.repeat(MAX_FAST_HEAD - 11)}\r\n`,
  `X-Big: ${'v'.repeat(MAX_FAST_HEAD - 10)}\r\n`,
];

function generate(r: () => number): Buffer {
  let text = '';
  const n = 1 + Math.floor(r() * 4);
  for (let i = 0; i < n; i++) {
    const odd = r() < 0.1;
    const len = odd ? Math.floor(r() * 8) : 1 + Math.floor(r() * 40);
    const size = odd ? pick(r, SIZES).replace('5', len.toString(16)) : len.toString(16) + (r() < 0.2 ? ';ext=1' : '');
    text += size + (odd ? pick(r, ENDS) : '\r\n') + 'x'.repeat(len + (r() < 0.03 ? 1 : 0)) + (r() < 0.05 ? pick(r, ENDS) : '\r\n');
  }
  text += '0' + (r() < 0.1 ? pick(r, ENDS) : '\r\n') + (r() < 0.4 ? pick(r, TRAILERS) : '') + (r() < 0.05 ? pick(r, ENDS) : '\r\n');
  if (r() < 0.3) text += 'GET /next HTTP/1.1\r\n';
  return Buffer.from(text, 'latin1');
}

/** What a checker makes of `pieces` from where it stands: the bytes of each that are body, done, refused. */
function viaJs(c: ChunkedBody, pieces: Buffer[]): { used: number[]; done: boolean; error: boolean } {
  const used: number[] = [];
  for (const p of pieces) {
    try {
      used.push(c.feed(p));
    } catch {
      return { used, done: c.done, error: true };
    }
    if (c.done) break;
  }
  return { used, done: c.done, error: false };
}

describe.skipIf(!nativeAvailable())('the native chunk checker goes on from JS and takes exactly what ChunkedBody takes', () => {
  it('on 20,000 generated bodies, split and handed over anywhere before the trailers', () => {
    const r = rng(1613);
    let handed = 0;
    let refused = 0;
    let whole = 0;
    for (let i = 0; i < 20_000; i++) {
      const pieces = split(r, generate(r), pick(r, [1, 3, 7, 64]));
      // JS reads the first pieces (its reads before the hand-over), then both go on from there.
      const js = new ChunkedBody();
      const at = Math.floor(r() * pieces.length);
      let ok = true;
      for (let k = 0; k < at && ok; k++) {
        try {
          js.feed(pieces[k]!);
          if (js.done) ok = false;
        } catch {
          ok = false;
        }
      }
      const state = ok ? js.handOver() : undefined;
      if (!state) continue;
      handed++;
      const rest = pieces.slice(at);
      const got = native().checkChunked(rest, state);
      const want = viaJs(js, rest);
      expect(
        { used: got.used, done: got.done, error: got.error !== undefined },
        `body ${i} from piece ${at}: ${JSON.stringify(Buffer.concat(pieces).toString('latin1'))}`,
      ).toEqual(want);
      if (want.error) refused++;
      if (want.done) whole++;
    }
    // The generator reaches every outcome often.
    expect(handed).toBeGreaterThan(5_000);
    expect(refused).toBeGreaterThan(500);
    expect(whole).toBeGreaterThan(500);
  });

  it('goes on mid-size, mid-extension, mid-data and between CR and LF', () => {
    const body = Buffer.from('1a;ab=cd\r\n' + 'y'.repeat(26) + '\r\n0;z\r\nX-Sum: 1\r\n\r\nnext', 'latin1');
    for (let at = 1; at < body.length - 4; at++) {
      const js = new ChunkedBody();
      js.feed(body.subarray(0, at));
      const state = js.handOver();
      // The trailers are not handed over.
      if (at >= body.indexOf('X-Sum')) expect(state).toBeUndefined();
      if (!state) continue;
      expect(native().checkChunked([body.subarray(at)], state), `from byte ${at}`).toEqual({ used: [body.length - 4 - at], done: true });
    }
  });

  it('refuses a state JS never hands over', () => {
    expect(() => native().checkChunked([Buffer.from('0\r\n\r\n')], [7, 0, 0, 0, 0])).toThrow(/not a state/);
    expect(() => native().checkChunked([Buffer.from('0\r\n\r\n')], [0, 2 ** 40, 0, 0, 0])).toThrow(/not a state/);
  });
});
