import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { foldSum, internetChecksum, pseudoHeaderSum, sumWords, updateChecksum, updatePartialChecksum } from '../../../src/engine/packet/index.js';

/** RFC 1071 done the slow, obvious way: the oracle for the fast sum. */
function referenceChecksum(bytes: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i += 2) {
    sum += (bytes[i] << 8) | (i + 1 < bytes.length ? bytes[i + 1] : 0);
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  }
  return ~sum & 0xffff;
}

describe('internet checksum', () => {
  it('matches the RFC 1071 §3 worked example', () => {
    const bytes = Buffer.from('0001f203f4f5f6f7', 'hex');
    expect(foldSum(sumWords(bytes, 0, bytes.length))).toBe(0xddf2);
    expect(internetChecksum(bytes)).toBe(0x220d);
  });

  it('pads an odd trailing byte with zero', () => {
    expect(internetChecksum(Buffer.from([0xab]))).toBe(~0xab00 & 0xffff);
    expect(internetChecksum(Buffer.from([0x12, 0x34, 0x56]))).toBe(~(0x1234 + 0x5600) & 0xffff);
  });

  it('is 0xffff for no bytes and for all-zero bytes', () => {
    expect(internetChecksum(Buffer.alloc(0))).toBe(0xffff);
    expect(internetChecksum(Buffer.alloc(33))).toBe(0xffff);
  });

  it('handles a 64 KiB run of 0xff without losing carries', () => {
    const bytes = Buffer.alloc(65535, 0xff);
    expect(internetChecksum(bytes)).toBe(referenceChecksum(bytes));
  });

  it('equals the reference for any bytes and any sub-range', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), fc.nat(), fc.nat(), (bytes, a, b) => {
        const start = bytes.length === 0 ? 0 : a % bytes.length;
        const end = start + (bytes.length === 0 ? 0 : b % (bytes.length - start + 1));
        expect(internetChecksum(bytes, start, end)).toBe(referenceChecksum(bytes.subarray(start, end)));
      }),
      { numRuns: 2000 },
    );
  });

  it('chains: a sum over split even-length ranges equals the sum over the whole', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 500 }), fc.nat(), (bytes, cut) => {
        const split = (cut % (bytes.length + 1)) & ~1;
        const chained = sumWords(bytes, split, bytes.length, sumWords(bytes, 0, split));
        expect(foldSum(chained)).toBe(foldSum(sumWords(bytes, 0, bytes.length)));
      }),
    );
  });

  it('adds the IPv4 and IPv6 pseudo-headers as RFC 768 / RFC 8200 lay them out', () => {
    const src = Buffer.from([198, 18, 0, 1]);
    const dst = Buffer.from([198, 18, 0, 2]);
    const layout4 = Buffer.concat([src, dst, Buffer.from([0, 17, 0x01, 0x02])]);
    expect(foldSum(pseudoHeaderSum(src, dst, 17, 0x0102))).toBe(foldSum(sumWords(layout4, 0, 12)));
    const src6 = Buffer.from('20010db8000000000000000000000001', 'hex');
    const dst6 = Buffer.from('20010db8000000000000000000000002', 'hex');
    const layout6 = Buffer.concat([src6, dst6, Buffer.from([0, 1, 0x02, 0x03, 0, 0, 0, 58])]);
    expect(foldSum(pseudoHeaderSum(src6, dst6, 58, 0x10203))).toBe(foldSum(sumWords(layout6, 0, 40)));
  });
});

describe('RFC 1624 incremental update', () => {
  it('follows the RFC 1624 §4 example (eqn. 3 gives 0x0000 where eqn. 2 gave 0xFFFF)', () => {
    // Header sums to 0xCD7A; checksum 0x3285; a word 0x5555 becomes 0x3285.
    expect(updateChecksum(0xdd2f, 0x5555, 0x3285)).toBe(0x0000);
  });

  it('equals a full recomputation after changing any words of any data', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 2, maxLength: 200 }).filter((b) => b.length % 2 === 0),
        fc.nat(),
        fc.uint8Array({ minLength: 2, maxLength: 16 }).filter((b) => b.length % 2 === 0),
        (data, at, replacement) => {
          const offset = (at % data.length) & ~1;
          const length = Math.min(replacement.length, data.length - offset);
          const before = internetChecksum(data);
          const oldSum = sumWords(data, offset, offset + length);
          const changed = Uint8Array.from(data);
          changed.set(replacement.subarray(0, length), offset);
          const newSum = sumWords(changed, offset, offset + length);
          const incremental = updateChecksum(before, oldSum, newSum);
          const full = internetChecksum(changed);
          // One's complement has two zeros; the only possible disagreement is 0x0000 vs 0xFFFF.
          if (incremental !== full) expect([incremental, full].sort()).toEqual([0, 0xffff]);
          else expect(incremental).toBe(full);
        },
      ),
      { numRuns: 5000 },
    );
  });

  it('updates a partial (pseudo-header only) checksum the way Linux does', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 4, maxLength: 4 }),
        fc.uint8Array({ minLength: 4, maxLength: 4 }),
        fc.uint8Array({ minLength: 4, maxLength: 4 }),
        (src, dst, newSrc) => {
          const partial = foldSum(pseudoHeaderSum(src, dst, 6, 40));
          const updated = updatePartialChecksum(partial, sumWords(src, 0, 4), sumWords(newSrc, 0, 4));
          expect(updated % 0xffff).toBe(foldSum(pseudoHeaderSum(newSrc, dst, 6, 40)) % 0xffff);
        },
      ),
    );
  });
});
