// One head routine, two callers (cpp/http1-answer.cc): the edge's answer framer (AnswerFramer, what
// the client gets) and the connector's FIN hold (ClosingAnswerWhole, quic-pump.cc: a flow's first
// read held for the host's FIN when it is one whole answer saying `Connection: close`). The hold
// once read heads with a looser twin of its own (a substring `close`, the last Content-Length, a
// chunked body "ending" in its last five bytes); hostile heads show what each caller now does, and
// generated answers that the hold agrees with ResponseReader (JS) on where an answer ends.
import { describe, expect, it } from 'vitest';
import { native, nativeAvailable } from '../../../src/engine/native/binding.js';
import { ResponseReader } from '../../../src/engine/protocol/http1.js';
import { HOSTILE_ANSWERS } from '../../helpers/answer-heads.js';
import { pick, rng } from '../../helpers/random.js';

const bytes = (s: string) => Buffer.from(s, 'latin1');
const hold = (s: string) => native().closingAnswerWhole(bytes(s));
/** The edge's framer on the whole answer: its refusal, or where the body ends and whether the client's connection closes. */
function edge(s: string): string {
  const r = native().frameAnswer([bytes(s)], false, false, 'Connection: keep-alive\r\n', '');
  if (r.error !== undefined) return `refused: ${r.error}`;
  return `${r.done ? 'whole' : r.ended ? 'until the end' : 'more to come'}${r.close ? ', closes' : ''}`;
}

/**
 * The hold's rule in JS: ResponseReader (to a GET) uses every byte and is done, and the final head
 * has a Connection header with the token `close` (as scanRequest reads a request's).
 */
function holdViaJs(text: string): boolean {
  const reader = new ResponseReader(false, false, '');
  try {
    if (reader.feed(bytes(text), []) !== text.length || !reader.done) return false;
  } catch {
    return false;
  }
  let off = 0;
  for (;;) {
    const end = text.indexOf('\r\n\r\n', off);
    const head = text.slice(off, end).split('\r\n');
    off = end + 4;
    if (Number(head[0]!.slice(9, 12)) >= 200)
      return head.some((line) => {
        const colon = line.indexOf(':');
        return line.slice(0, colon).trim().toLowerCase() === 'connection' && /(^|,)\s*close\s*(,|$)/i.test(line.slice(colon + 1).trim());
      });
  }
}

function answer(r: () => number): string {
  let s = r() < 0.2 ? `HTTP/1.1 ${pick(r, ['100 Continue', '103 Early Hints'])}\r\n${pick(r, ['', 'Connection: close\r\n'])}\r\n` : '';
  const body = pick(r, ['hello', '', 'x'.repeat(300)]);
  const lines = [pick(r, ['HTTP/1.1 200 OK', 'HTTP/1.0 404 Not Found', 'HTTP/1.1 204', 'HTTP/1.1 304 Not Modified', 'HTTP/1.1 2000'])];
  const n = Math.floor(r() * 5);
  for (let i = 0; i < n; i++) {
    // A name with whitespace (refused by both since obs-fold and names are checked) now and then.
    const name =
      r() < 0.05
        ? pick(r, ['connection ', ' CONNECTION'])
        : pick(r, ['Content-Length', 'content-length', 'Transfer-Encoding', 'Connection', 'CONNECTION', 'Server', 'X-A']);
    const value = /length/i.test(name)
      ? pick(r, [String(body.length), String(body.length), '0', String(body.length + 1), 'x'])
      : /transfer/i.test(name)
        ? pick(r, ['chunked', 'gzip', 'gzip, chunked'])
        : /connection/i.test(name)
          ? pick(r, ['close', 'Close', 'keep-alive', 'keep-alive, close', 'close,upgrade', 'closed', 'x-close', ' close ', 'close\xa0'])
          : pick(r, ['x', 'close']);
    lines.push(`${name}:${pick(r, ['', ' '])}${value}`);
  }
  if (r() < 0.05) lines.push(pick(r, [' folded', 'NoColon']));
  s += `${lines.join('\r\n')}\r\n\r\n`;
  if (lines.some((l) => /transfer-encoding/i.test(l)) && r() < 0.8)
    s += `${body ? `${body.length.toString(16)}\r\n${body}\r\n` : ''}${pick(r, ['0\r\n\r\n', '0\r\nX-T: 1\r\n\r\n', '0\r\n', 'q\r\n\r\n'])}`;
  else s += body;
  if (r() < 0.15) s += pick(r, ['HTTP/1.1 200 OK\r\n\r\n', '0\r\n\r\n', 'x']);
  return s;
}

describe.skipIf(!nativeAvailable())("one head routine for the edge's framer and the connector's FIN hold", () => {
  it.each(HOSTILE_ANSWERS)('%s', (_name, text, held, framing) => {
    expect(hold(text)).toBe(held);
    expect(edge(text)).toBe(framing);
  });

  it('holds only what ResponseReader reads as one whole answer whose final head says Connection: close (10,000 generated answers)', () => {
    const r = rng(24);
    let held = 0;
    for (let i = 0; i < 10_000; i++) {
      const text = answer(r);
      const want = holdViaJs(text);
      expect(hold(text), `case ${i}: ${JSON.stringify(text)}`).toBe(want);
      if (want) held++;
    }
    // Both verdicts are exercised.
    expect(held).toBeGreaterThan(300);
    expect(held).toBeLessThan(9_700);
  });
});
