// Pure-TypeScript parts of the native wrapper: address formatting (the one core/address.ts formatter, as the UDP socket uses it) and the send queue.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { formatAddress } from '../../../src/core/address.js';
import { NativeError } from '../../../src/engine/native/errors.js';
import { SendQueue } from '../../../src/engine/native/send-queue.js';

describe('formatAddress (the addresses the native UDP socket reports)', () => {
  it('prints IPv4', () => {
    expect(formatAddress(Uint8Array.from([198, 18, 0, 1]), 0, 4)).toBe('198.18.0.1');
  });

  it('prints IPv6 as RFC 5952 (same as the WHATWG URL serializer)', () => {
    // Bias towards zero groups so that "::" placement gets exercised.
    const group = fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 0, max: 0xffff }));
    fc.assert(
      fc.property(fc.array(group, { minLength: 8, maxLength: 8 }), (groups) => {
        const bytes = new Uint8Array(16);
        groups.forEach((g, i) => {
          bytes[2 * i] = g >> 8;
          bytes[2 * i + 1] = g & 0xff;
        });
        const expected = new URL(`http://[${groups.map((g) => g.toString(16)).join(':')}]/`).hostname.slice(1, -1);
        // The URL serializer writes IPv4-mapped addresses in hex; RFC 5952 §5 and Node keep the dotted quad.
        if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) return;
        expect(formatAddress(bytes, 0, 16)).toBe(expected);
      }),
      { numRuns: 2000 },
    );
    expect(formatAddress(new Uint8Array(16), 0, 16)).toBe('::');
    // A dual-stack socket's IPv4 peer, as Node prints it (the two formatters disagreed here).
    expect(formatAddress(Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 1]), 0, 16)).toBe('::ffff:198.18.0.1');
  });
});

describe('SendQueue', () => {
  it('keeps order, stops when the sender is full, skips a failing item and reports it', () => {
    const q = new SendQueue<number>(10);
    expect(q.pushFrom([1, 2, 3, 4, 5], 1)).toBe(4);
    expect(q.length).toBe(4);

    const sent: number[] = [];
    let room = 2;
    const send = (items: readonly number[], start: number) => {
      let i = start;
      for (; i < items.length && room > 0; i++, room--) {
        if (items[i] === 4) {
          const err = new NativeError('sendmmsg', 22, 'EINVAL', 'bad');
          err.index = i;
          throw err;
        }
        sent.push(items[i]!);
      }
      return i - start;
    };
    const errors: NativeError[] = [];
    expect(q.flush(send, (e) => errors.push(e))).toBe(false);
    expect(sent).toEqual([2, 3]);
    room = 10;
    expect(q.flush(send, (e) => errors.push(e))).toBe(true);
    expect(sent).toEqual([2, 3, 5]);
    expect(errors.map((e) => e.code)).toEqual(['EINVAL']);
  });

  it('drops and counts what does not fit', () => {
    const q = new SendQueue<number>(3);
    expect(q.pushFrom([1, 2, 3, 4, 5], 0)).toBe(3);
    expect(q.dropped).toBe(2);
    const disposed: number[] = [];
    q.clear((n) => disposed.push(n));
    expect(disposed).toEqual([1, 2, 3]);
    expect(q.length).toBe(0);
  });
});
